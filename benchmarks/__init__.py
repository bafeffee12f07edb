"""Benchmarks: one script per workload, ``uv run python -m benchmarks.<name> [--quick]``."""
