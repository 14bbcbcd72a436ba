"""Benchmarks run by ``fieldgate bench``; each prints its figures."""
