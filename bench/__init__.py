"""`make bench`: the worker on the embedded stack under load, measured from the topics themselves."""
