"""Build steps: host (cffi, for bit-exact tests and host benchmarks) and boards (cross)."""
