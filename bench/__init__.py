"""Benchmarks of SPEC §6, printed as one table by `scripts/bench` (python -m bench)."""
