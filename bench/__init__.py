"""Benchmarks for Shipmate: run with `make bench`; results land in docs/PERFORMANCE.md."""
