"""`mnist-edge tune`: onnx_int8 (a recipe -> an int8 ONNX file), layers (per-layer SQNR), search, report."""
