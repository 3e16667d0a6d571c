"""Tools for tests and benchmarks only (never imported by the service)."""
