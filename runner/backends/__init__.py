"""Where a model's network runs besides PyTorch eager (ONNX Runtime)."""
