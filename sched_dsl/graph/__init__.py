"""The graph level: ONNX import, the executor (load_onnx), host operators and the schedules
that whole models give their operators."""
