"""The environment scripts/setup.sh builds: compiled mmcv ops, models built from
the configs inside the installed packages, safe checkpoint loading, doctor."""
from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT
from runner.checkpoints.safe_load import UnsafeCheckpointError, install_allow_list, load_checkpoint_file


def test_mmcv_compiled_ops_run():
    from mmcv.ops import batched_nms, nms, roi_align
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]])
    scores = torch.tensor([0.9, 0.8, 0.7])
    _, kept = nms(boxes, scores, 0.5)
    assert kept.tolist() == [0, 2]
    _, kept = batched_nms(boxes, scores, torch.tensor([0, 1, 0]), dict(type="nms", iou_threshold=0.5))
    assert sorted(kept.tolist()) == [0, 1, 2]  # different classes never suppress each other
    feats = torch.arange(16.0).reshape(1, 1, 4, 4)
    pooled = roi_align(feats, torch.tensor([[0.0, 0, 0, 4, 4]]), (2, 2), 1.0, 1, "avg", True)
    assert pooled.shape == (1, 1, 2, 2)


def test_mmdet_and_mmpose_import_with_pinned_versions():
    import mmcv
    import mmdet
    import mmpose
    import mmpose.apis  # noqa: F401  (imports mmdet lazily; fails if mmdet rejects mmcv)
    assert (mmcv.__version__, mmdet.__version__, mmpose.__version__) == ("2.1.0", "3.3.0", "1.3.2")


@pytest.mark.parametrize("name,library", [("rtmdet_m_person", "mmdet"), ("rtmpose_m", "mmpose")])
def test_models_build_from_configs_inside_the_installed_packages(name, library):
    from runner.models.configs import config_identity, load_config, resolve_config_path
    from runner.models.loading import build_model
    from runner.models.registry import load_entry

    entry = load_entry(name)
    path = resolve_config_path(entry.config)
    assert f"site-packages/mmpose/.mim/" in str(path)
    identity, resolved = config_identity(entry.config), load_config(entry.config).to_dict()
    model = build_model(entry, library).eval()
    # builders edit configs in place; what later readers of the config see must not change (CI regression)
    config_identity.cache_clear()
    assert config_identity(entry.config) == identity and load_config(entry.config).to_dict() == resolved
    with torch.no_grad():
        out = model._forward(torch.zeros(1, 3, 256, 192) if library == "mmpose" else torch.zeros(1, 3, 640, 640))
    if library == "mmpose":
        simcc_x, simcc_y = out
        assert simcc_x.shape == (1, 17, 384) and simcc_y.shape == (1, 17, 512)  # SimCC: 2x split ratio
    else:
        cls_scores, bbox_preds = out
        assert [c.shape[1] for c in cls_scores] == [1, 1, 1]  # one class: person


def _published(tmp_path, meta, name="ckpt.pth"):
    """Saved as OpenMMLab's publish_model saves: legacy serialization."""
    path = tmp_path / name
    torch.save({"meta": meta, "state_dict": {"w": torch.ones(2)}}, path,
               _use_new_zipfile_serialization=False)
    return path


def test_checkpoint_with_numpy_meta_loads_with_weights_only(tmp_path):
    meta = {"dataset_meta": {"sigmas": np.array([0.026, 0.025], dtype=np.float32),
                             "flip_indices": np.array([1, 0]), "area": np.float64(1.5)}}
    loaded = load_checkpoint_file(_published(tmp_path, meta))
    np.testing.assert_array_equal(loaded["meta"]["dataset_meta"]["sigmas"], meta["dataset_meta"]["sigmas"])
    assert loaded["meta"]["dataset_meta"]["area"] == 1.5


def test_checkpoint_pickled_by_numpy_1_loads(tmp_path):
    """Published checkpoints were pickled with numpy 1, whose module is numpy.core
    (mmpose#3231 needed numpy.core.multiarray._reconstruct)."""
    path = _published(tmp_path, {"sigmas": np.ones(3, np.float32), "s": np.float32(2)})
    data = path.read_bytes()
    assert b"numpy._core.multiarray" in data
    path.write_bytes(data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray"))
    torch.serialization.clear_safe_globals()
    try:
        with pytest.raises(pickle.UnpicklingError):  # what plain weights_only=True says
            torch.load(path, weights_only=True)
    finally:
        install_allow_list()
    loaded = load_checkpoint_file(path)
    np.testing.assert_array_equal(loaded["meta"]["sigmas"], np.ones(3))


def test_checkpoint_with_a_disallowed_global_is_refused(tmp_path):
    import argparse
    path = _published(tmp_path, {"args": argparse.Namespace(lr=0.1)})
    with pytest.raises(UnsafeCheckpointError) as err:
        load_checkpoint_file(path)
    message = str(err.value)
    assert "argparse.Namespace" in message and str(path) in message and "\n" not in message


def test_weights_only_stays_on_globally():
    import os
    assert "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD" not in os.environ
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ


def test_doctor_is_green_here():
    done = subprocess.run([sys.executable, "-m", "runner.doctor"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    for check in ("mmcv ops", "mmdet", "mmpose", "xtcocotools", "checkpoint loading", "checkpoint cache"):
        line = next(l for l in done.stdout.splitlines() if f"  {check} " in l)
        assert line.strip().startswith("ok"), line


def test_doctor_names_the_fix_for_a_broken_mmcv(monkeypatch):
    from runner import doctor

    def broken():
        raise ModuleNotFoundError("No module named 'mmcv._ext'")

    result = doctor.run_check(broken)
    assert result.status == "FAIL" and "MMCV_WITH_OPS=1" in result.fix


def test_lock_is_complete():
    done = subprocess.run([sys.executable, "-m", "pip", "check"], capture_output=True, text=True)
    problems = [l for l in done.stdout.splitlines() if l and "requires chumpy" not in l]
    assert problems == []


def test_second_setup_does_nothing():
    done = subprocess.run(["scripts/setup.sh"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0 and "nothing to do" in done.stdout


def test_versions_read_off_the_dist_info_folders_are_importlib_metadatas():
    """runner.versions reads every installed version in one listing; it must say what
    importlib.metadata says, for every package of the lock (keys and manifests hold them)."""
    from importlib import metadata
    from runner import versions
    locked = [line.split("==")[0] for line in (ROOT / "requirements.lock").read_text().splitlines()
              if "==" in line and not line.startswith("#")]
    assert len(locked) > 50
    for name in [*locked, "pose-runner", "cv2"]:
        distribution = versions._DISTRIBUTIONS.get(name, name)
        assert versions.version(name) == metadata.version(distribution), name
