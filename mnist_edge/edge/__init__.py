"""The edge side: core plus Pillow and the torch-free runtimes (preprocess, predict, info, serve). Never torch."""
