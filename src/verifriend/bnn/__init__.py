"""Binarized neural networks: training, exact integer form, SAT encoding and solvers."""
