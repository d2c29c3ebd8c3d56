"""Make checkpoints locally, for tests, benchmarks and offline demos: the
official weights cannot be downloaded everywhere (CI has no route to
download.openmmlab.com).

A fabricated checkpoint is the real architecture, built from the model's own
config, with seeded random weights made well-conditioned: BatchNorm statistics
are calibrated on real-looking inputs (so activations neither vanish nor
explode), and an RTMDet head is scaled so its scores spread over (0, 1) and
its boxes have sizes, as a trained detector's do. The file is saved the way
OpenMMLab's publish_model does (`meta` + `state_dict`, legacy serialization)
and named `<stem>-<sha256[:8]>.pth`, so the download code verifies it like an
official one.

    python -m runner.models.fabricate rtmdet_m_person rtmpose_m --out DIR [--calibrate IMAGES_DIR]
"""
from __future__ import annotations

import argparse
import io
import math
from pathlib import Path

import cv2
import numpy as np
import torch

from runner import atomic
from runner.hashing import sha256_bytes
from runner.models.loading import build_model

_BN = torch.nn.modules.batchnorm._BatchNorm


def synthetic_images(count: int = 4, size: int = 480, seed: int = 0) -> list[np.ndarray]:
    """Smooth random colour fields: closer to photos' statistics than white noise."""
    rng = np.random.default_rng(seed)
    return [cv2.resize(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8), (size * 4 // 3, size),
                       interpolation=cv2.INTER_CUBIC) for _ in range(count)]


def _model_inputs(model, estimator_cls, images: list[np.ndarray]) -> torch.Tensor:
    """A batch exactly as the model sees it at test time (per-box families:
    three boxes of each image)."""
    from mmengine.dataset import pseudo_collate
    if estimator_cls.library == "mmpose":
        from mmpose.apis.inference import dataset_meta_from_config
        model.dataset_meta = dataset_meta_from_config(model.cfg, dataset_mode="train")
    inputs = images
    if estimator_cls.unit == "box":
        inputs = [(img, np.array(box, dtype=np.float32)) for img in images
                  for h, w in [img.shape[:2]]
                  for box in ([0, 0, w, h], [w * .2, h * .1, w * .7, h * .9], [w * .5, h * .3, w, h])]
    prepared = estimator_cls(model).prepare(inputs)
    return model.data_preprocessor(pseudo_collate(prepared), False)["inputs"]


def calibrate_batchnorm(model, inputs: torch.Tensor) -> None:
    """Set every BatchNorm's running statistics to those of `inputs`."""
    norms = [m for m in model.modules() if isinstance(m, _BN)]
    for bn in norms:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative average over the calibration passes
    model.eval()
    for bn in norms:
        bn.train()
    with torch.no_grad():
        model._forward(inputs)  # backbone, neck and head: heads have BatchNorms too
    model.eval()


def _rescale_convs(convs: list[torch.nn.Conv2d], run, mean: float, std: float) -> None:
    """Scale each conv so its outputs on the calibration batch have `mean`/`std`."""
    outputs = {}
    hooks = [c.register_forward_hook(lambda m, i, o: outputs.__setitem__(m, o)) for c in convs]
    with torch.no_grad():
        run()
        for conv in convs:
            out = outputs[conv]
            raw_mean = float(out.mean()) - (float(conv.bias.mean()) if conv.bias is not None else 0.0)
            scale = std / max(float(out.std()), 1e-12)
            conv.weight.mul_(scale)
            if conv.bias is not None:
                conv.bias.fill_(mean - raw_mean * scale)
    for h in hooks:
        h.remove()


def tune_rtmdet_head(model, inputs: torch.Tensor) -> None:
    """Spread the random detector's scores and give its boxes real sizes."""
    head = model.bbox_head
    run = lambda: model._forward(inputs)  # noqa: E731
    _rescale_convs(list(head.rtm_cls), run, mean=-4.0, std=1.5)
    # Box side distances: exp(reg) * stride, or reg * stride without exp_on_reg.
    reg_mean = math.log(2.0) if head.exp_on_reg else 2.0
    _rescale_convs(list(head.rtm_reg), run, mean=reg_mean, std=0.5)


def fabricate(entry, out_dir: str | Path, seed: int = 0,
              calibration: list[np.ndarray] | None = None) -> Path:
    """Make and save a checkpoint for a registry model entry (dict-like with
    `family`, `config`, `checkpoint`); return its path."""
    from runner.families import family
    from runner.models.loading import quiet_openmmlab

    estimator_cls = family(str(entry["family"])).reference
    images = calibration or synthetic_images()
    official = Path(str(entry["checkpoint"])).name
    calibrated_on = sha256_bytes(b"".join(np.ascontiguousarray(i).tobytes() for i in images))[:6]
    stem = f"{official.split('.pth')[0]}_local-seed{seed}-cal{calibrated_on}"
    out_dir = Path(out_dir)
    made = sorted(out_dir.glob(f"{stem}-*.pth"))
    if made:  # deterministic: the same entry, seed and images give the same file
        return made[0]
    torch.manual_seed(seed)
    model = build_model(entry, estimator_cls.library)
    with quiet_openmmlab():  # init_weights logs every parameter
        model.init_weights()
    inputs = _model_inputs(model, estimator_cls, images)
    calibrate_batchnorm(model, inputs)
    if estimator_cls.library == "mmdet":
        tune_rtmdet_head(model, inputs)
        meta = {"dataset_meta": {"classes": (str(entry["task"]),)}}  # one-class detectors
    else:
        meta = {"dataset_meta": model.dataset_meta}  # carries numpy arrays, as official ones do
    buffer = io.BytesIO()  # the name carries the file's hash, known once it is written
    torch.save({"meta": meta, "state_dict": model.state_dict()}, buffer, _use_new_zipfile_serialization=False)
    data = buffer.getvalue()
    final = out_dir / f"{stem}-{sha256_bytes(data)[:8]}.pth"
    atomic.write_bytes(final, data)
    return final


def load_images(folder: str | Path) -> list[np.ndarray]:
    from runner.inputs import IMAGE_EXTS
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_EXTS)
    return [cv2.imread(str(p)) for p in paths]


def main(argv=None) -> None:
    from runner.console import silence_library_noise
    from runner.models.registry import load_entry

    silence_library_noise()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="registry names, e.g. rtmdet_m_person rtmpose_m")
    parser.add_argument("--out", required=True, help="folder to write the .pth files to")
    parser.add_argument("--calibrate", help="folder of images to calibrate BatchNorm on")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    images = load_images(args.calibrate) if args.calibrate else None
    for name in args.models:
        print(fabricate(load_entry(name), args.out, args.seed, images))


if __name__ == "__main__":
    main()
