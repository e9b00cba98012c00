"""Benchmarks: they print figures (recorded in docs/benchmarks.md); they are not tests."""
