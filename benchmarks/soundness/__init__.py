"""The soundness campaign's modules; ``benchmarks/soundness_campaign.py`` is its command line.

- ``netgen``: random small networks, their ONNX models, float64 forward pass, onnxruntime;
- ``props``: properties (robustness and general) and their VNN-LIB text;
- ``oracle``: the exact oracle (MILP / branch and bound) and the per-index instances;
- ``campaign``: one network through verifriend's VNN-COMP path and its resolution, the
  worker processes, the JSONL log and the summary.
"""
