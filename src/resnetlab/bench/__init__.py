"""Benchmarks of resnetlab's networks."""
