"""Benchmarks against a running local stack (`make bench`); see bench/run.py."""
