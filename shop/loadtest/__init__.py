"""The load test behind `make loadtest`: orders over REST in stages, a report folder."""
