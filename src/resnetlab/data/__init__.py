"""Data sets and the papers' input pipelines."""
