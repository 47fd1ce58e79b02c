"""Evaluation: benchmark items (items.py) read by the benchmark loaders (benchmarks/)."""
