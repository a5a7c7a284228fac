"""Frontends: build the graph IR from a torch module or an ONNX file."""
