"""`make bench`: the pipeline measured against its ceilings on the local broker (issue 7)."""
