"""Benchmarks: each prints its figures and the CPU; run from the repository root as ``python -m bench.NAME``."""
