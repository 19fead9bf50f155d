"""The int8 ONNX graph and its exact integer semantics (numpy and onnx, no torch)."""
