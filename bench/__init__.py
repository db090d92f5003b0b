"""Benchmarks: scripts that print figures, run by hand (`python -m bench.ingest_benchmark`), never by pytest."""
