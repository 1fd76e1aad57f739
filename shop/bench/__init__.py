"""`make bench`: the engine benchmark on the peers' workload (../shared/peers).

A burst of N purchases placed through the service the REST API calls, then N purchases
one at a time, for each mode, through real worker, relay and beat processes; what it
cost (SQL statements, commits, broker messages, worker memory) is counted, and the
books are checked after every run.
"""
