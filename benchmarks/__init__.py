"""`make bench`: the worker measured against its ceilings on the local broker (issues 7 and 11)."""
