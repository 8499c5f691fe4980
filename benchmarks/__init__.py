"""Benchmarks of ihp-rt (run as modules, e.g. ``python -m benchmarks.encoding``)."""
