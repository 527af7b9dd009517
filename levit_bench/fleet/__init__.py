"""A fleet: hosts joined in a Ray cluster, each cell of a sweep placed by Ray on the hosts that
should measure it, every record sent back to the one driver that stores it.

A host joins with `levit-bench worker start` (`ray start` advertising what it can measure as
custom resources: a unit per physical core per platform, and one for its own label); the head
is a plain `ray start --head`. The sweep's driver asks Ray for a task per cell-round on a chosen
host; the task runs the cell's worker process there as a local sweep would (core locks hold on
that host) and returns the record. Ray places work; it stores nothing.
"""
