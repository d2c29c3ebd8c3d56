"""Shared test fixtures.

Checkpoints are made locally from the models' own configs (real architectures,
seeded weights; runner.models.fabricate) and served by an HTTP server on
127.0.0.1, so the download path is the real one and nothing leaves the machine.
"""
from __future__ import annotations

import http.server
import json
import os
import shutil
import threading
from collections import Counter
from functools import partial
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
COCO = DATA / "coco"
# Reused between sessions (same entry, seed and images give the same file).
CHECKPOINTS = Path(os.environ.get("POSE_RUNNER_TEST_CHECKPOINTS", ROOT / ".cache" / "test-checkpoints"))


def exports_in(folder: Path, pattern: str = "*.onnx") -> list[Path]:
    """The runner's exports in a backend.dir, not ONNX Runtime's optimized graphs
    kept beside them (`NAME.ort-DIGEST.onnx`)."""
    return sorted(p for p in folder.glob(pattern) if ".ort-" not in p.name)


def pytest_configure(config):
    if not COCO.is_dir():
        raise pytest.UsageError(f"test data not found at {DATA}: clone the project beside ../shared")


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """Static files, with HTTP Range (for resumed downloads)."""

    def log_message(self, *args):
        pass

    def send_head(self):
        spec = self.headers.get("Range")
        path = Path(self.translate_path(self.path))
        if not spec or not path.is_file():
            return super().send_head()
        start = int(spec.split("=")[1].split("-")[0])
        size = path.stat().st_size
        if start >= size:
            self.send_error(416)
            return None
        f = open(path, "rb")
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        return f


@pytest.fixture(scope="session")
def served_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("served")


@pytest.fixture(scope="session")
def server(served_dir):
    """Base URL of a local HTTP server for `served_dir`."""
    httpd = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(RangeHandler, directory=str(served_dir)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


@pytest.fixture(scope="session")
def calibration_images():
    from runner.models.fabricate import load_images
    return load_images(COCO)


@pytest.fixture(scope="session")
def make_checkpoint(calibration_images, served_dir, server):
    """make_checkpoint("rtmpose_t", seed=0) -> (local path, URL on the local server)."""
    from runner.models.registry import load_entry
    from runner.models.fabricate import fabricate

    def make(name: str, seed: int = 0, images=None):
        path = fabricate(load_entry(name), CHECKPOINTS, seed, images or calibration_images)
        served = served_dir / path.name
        if not served.exists():
            shutil.copyfile(path, served)
        return path, f"{server}/{path.name}"

    return make


@pytest.fixture(scope="session")
def machine_dir(tmp_path_factory) -> Path:
    """This machine's own files (exports, the memos of file hashes and of
    checkpoints found to fit, the libraries' files: cache.machine_dir) shared by
    the session's runs, as a user's runs share them: each model pays its export
    and its fit check (a torch import and a model build) once, not once a test."""
    return tmp_path_factory.mktemp("machine")


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


@pytest.fixture
def forwards(monkeypatch):
    """Counts images (detectors) and crops (pose models) that reach a model,
    independently of the runner's own statistics: MMPose's / MMDetection's
    test_step by model class, and the native engine's estimators under the
    class of the model they run (RTMDet, TopdownPoseEstimator)."""
    from mmengine.model import BaseModel
    from runner.native.detector import NativeDetector
    from runner.native.topdown import NativeTopdown

    counts: Counter = Counter()
    original = BaseModel.test_step

    def counting(self, data):
        inputs = data["inputs"]
        counts[type(self).__name__] += len(inputs)
        return original(self, data)

    monkeypatch.setattr(BaseModel, "test_step", counting)
    for cls, name in ((NativeDetector, "RTMDet"), (NativeTopdown, "TopdownPoseEstimator")):
        def native(self, inputs, _name=name, _original=cls.predict):
            counts[_name] += len(inputs)
            return _original(self, inputs)
        monkeypatch.setattr(cls, "predict", native)
    return counts


@pytest.fixture(scope="session", autouse=True)
def _allow_list():
    """MMPose's own init_model (the reference path) loads with weights_only too."""
    from runner.checkpoints.safe_load import install_allow_list
    install_allow_list()


def face_file(tmp_path):
    """A COCO-style face file (COCO-WholeBody-Face's layout): each valid face of
    the shared whole-body ground truth, its face_box and its 68 face_kpts."""
    data = json.loads((COCO / "test_coco_wholebody.json").read_text())
    faces = [{"id": a["id"], "image_id": a["image_id"], "category_id": 1, "iscrowd": 0, "bbox": a["face_box"],
              "area": a["face_box"][2] * a["face_box"][3], "keypoints": a["face_kpts"],
              "num_keypoints": sum(v > 0 for v in a["face_kpts"][2::3])}
             for a in data["annotations"] if a.get("face_valid")]
    path = tmp_path / "faces.json"
    with_faces = {a["image_id"] for a in faces}
    path.write_text(json.dumps({"images": [im for im in data["images"] if im["id"] in with_faces], "annotations": faces,
                                "categories": [{"id": 1, "name": "face"}]}))
    return path
