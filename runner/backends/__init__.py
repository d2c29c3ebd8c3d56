"""Where a model's network runs besides PyTorch eager float32: the ONNX export
every other backend runs (export.py), ONNX Runtime, OpenVINO (with bf16 / f16 /
int8), PyTorch autocast (pytorch.py), and how far reduced precision drifts
(drift.py). Which backend runs is decided in runner/models/loading.py."""
