"""Benchmarks: scripts that measure samsa, run by hand (`python -m samsa.bench.<name>`).

They are not timed tests: the figures they print are recorded in docs/benchmarks.md.
"""
