"""Micro benchmarks (pytest-benchmark), run by `make bench`, never by `make test`:

    .venv/bin/python -m pytest benchmarks/test_micro.py --benchmark-enable

The pose network on a batch of 32 crops (PyTorch eager, ONNX Runtime, OpenVINO f32 and bf16),
and what a warm run pays per item: a cache lookup and a content hash."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.compare import DATA, POSE, ROOT, checkpoints

BATCH = 32


def _runs() -> list[tuple[str, str]]:
    from runner.backends.openvino import capabilities
    bf16 = [("openvino", "bf16")] if "BF16" in capabilities() else []  # only where the CPU has it
    return [("pytorch", "f32"), ("onnxruntime", "f32"), ("openvino", "f32"), *bf16]


RUNS = _runs()


@pytest.fixture(scope="module")
def pose_networks(tmp_path_factory):
    """The pose network per backend: PyTorch's own forward, or the export (the native engine's network)."""
    from runner.backends.files import ExportSpec
    from runner.models.loading import ensure_export
    from runner.backends.network import Network
    from runner.checkpoints.safe_load import install_allow_list
    from runner.hashing import sha256_file
    from runner.models.loading import load_model
    from runner.models.registry import load_entry
    install_allow_list()
    path = checkpoints(ROOT / ".cache" / "bench-checkpoints")[POSE]
    entry = load_entry(POSE)
    spec = ExportSpec.of(str(path), sha256_file(path), str(entry.config), "mmpose", entry.input_size,
                         str(tmp_path_factory.mktemp("onnx")), "bench")
    out = {}
    for backend, precision in RUNS:
        if backend == "pytorch":
            model = load_model(spec, "cpu")
            out[backend, precision] = lambda x, m=model: m._forward(torch.from_numpy(x))
        else:
            out[backend, precision] = Network(ensure_export(spec), backend, None, precision, "bench")
    return out


@pytest.fixture(scope="module")
def crops():
    return np.random.default_rng(0).standard_normal((BATCH, 3, 256, 192)).astype(np.float32)


@pytest.mark.parametrize("backend,precision", RUNS)
def test_pose_network_batch_of_32(benchmark, pose_networks, crops, backend, precision):
    with torch.no_grad():
        outputs = benchmark(pose_networks[backend, precision], crops)
    assert tuple(outputs[0].shape) == (BATCH, 17, 384)


def test_cache_lookup(benchmark, tmp_path):
    from runner.cache import EntryKey, Store
    store = Store(tmp_path)
    key = EntryKey("pose", "ab" * 32, "m", "p", "c")
    store.put(key, {"keypoints": np.zeros((17, 2), np.float32)}, label="bench")
    found = benchmark(store.get, key)
    assert found["keypoints"].shape == (17, 2)


def test_content_hash_of_an_image(benchmark):
    from runner.hashing import sha256_file
    path = sorted((DATA / "coco").glob("*.jpg"))[0]
    assert len(benchmark(sha256_file, path)) == 64
