"""Post-training sparsification that keeps a network's behaviour on a validation set (VNN)."""
