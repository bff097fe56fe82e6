"""Legal holds and disclosures (LAW): placed, released and recorded by legal staff."""
