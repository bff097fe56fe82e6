"""`make bench`: each metric beside its raw-infrastructure baseline, same run, same servers."""
