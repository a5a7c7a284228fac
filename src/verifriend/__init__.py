"""verifriend: train, post-process, verify and measure verification-friendly neural networks."""

__version__ = "0.1.0"
