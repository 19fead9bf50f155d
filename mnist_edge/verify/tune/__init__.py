"""`mnist-edge tune`: layers.py (per-layer SQNR), search.py (recipes verified and timed), report.py (tune.json/md/png).

A recipe is applied to the fp32 ONNX model by pytorch/exporters/onnx_int8.py, the int8 exporter itself.
"""
