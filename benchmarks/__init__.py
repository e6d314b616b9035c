"""Benchmarks of duro side by side with the real Restate server: load generator, scenarios, process accounting and reports.

Run `python -m benchmarks --help`. `benchmarks/log_append.py` is a separate
microbenchmark of the embedded log.
"""
