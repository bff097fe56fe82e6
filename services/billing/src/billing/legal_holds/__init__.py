"""Legal holds (LAW): placed and released by legal staff; no purge passes one."""
