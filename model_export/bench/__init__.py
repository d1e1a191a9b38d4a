"""Benchmarks: the PyTorch eager reference and the descriptor extractors' speed."""
