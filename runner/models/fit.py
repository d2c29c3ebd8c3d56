"""Whether a checkpoint fits its model: every weight of the checkpoint loads
into the model its entry's config builds, and every weight of the model is
in the checkpoint, with the same shape.

MMPose and MMDetection load checkpoints with strict=False: a checkpoint of
another model (RTMPose-t's into RTMPose-m) loads the weights whose shapes
happen to fit, leaves the rest as initialised, and the run gives wrong
keypoints with status `ok`. So a registry model's checkpoint is checked once
before any image is read (and before an export is made from it): the model
is built on torch's meta device (shapes, no memory, no weights initialised)
and mmengine's own loader, strict, reports what does not fit. A checkpoint
that fits is remembered (the cache's memo), so later runs need no torch."""
from __future__ import annotations

import functools
import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

from runner import atomic
from runner.errors import RunnerError
from runner.hashing import digest
from runner.versions import versions

_SIZE = re.compile(r"size mismatch for (\S+): copying a param with shape torch\.Size\(\[([^\]]*)\]\) from "
                   r"checkpoint, the shape in current model is torch\.Size\(\[([^\]]*)\]\)")
_LISTED = {"missing": re.compile(r"missing keys in source state_dict: (.*)"),
           "unexpected": re.compile(r"unexpected key in source state_dict: (.*)")}


@dataclass(frozen=True)
class Misfit:
    """What mmengine's strict loader reported: weights of other shapes
    (name, checkpoint's shape, model's shape), and the names missing from the
    checkpoint or not in the model."""
    shapes: tuple[tuple[str, str, str], ...]
    missing: tuple[str, ...]
    unexpected: tuple[str, ...]

    @classmethod
    def read(cls, report: str) -> "Misfit":
        shapes = tuple(_SIZE.findall(report))
        listed = {kind: tuple(n.strip() for n in found.group(1).split(",") if n.strip())
                  if (found := pattern.search(report)) else () for kind, pattern in _LISTED.items()}
        return cls(shapes, listed["missing"], listed["unexpected"])

    def example(self) -> str:
        """One weight that does not fit, in words."""
        if self.shapes:
            name, theirs, ours = self.shapes[0]
            return f"{name} is [{theirs}] in the checkpoint but [{ours}] in the model"
        if self.missing:
            return f"the model's {self.missing[0]} is not in the checkpoint"
        return f"the checkpoint's {self.unexpected[0]} is not in the model"

    def counts(self) -> str:
        return (f"{len(self.shapes)} weights of another shape, {len(self.missing)} missing, "
                f"{len(self.unexpected)} not in the model")


def misfit(config: str, library: str, state: dict) -> Misfit | None:
    """What of the checkpoint `state` does not fit the model of `config` (None: it all does)."""
    import torch
    from mmengine.runner.checkpoint import _load_checkpoint_to_model
    from runner.models.loading import build_model, quiet_openmmlab

    with quiet_openmmlab(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "copying from a non-meta parameter ... is a no-op", per weight
        with torch.device("meta"):
            model = build_model({"config": config}, library)
        try:
            _load_checkpoint_to_model(model, state, strict=True)
        except RuntimeError as err:
            return Misfit.read(str(err))
    return None


@functools.lru_cache(maxsize=16)
def _checked(checkpoint: str, sha256: str, config: str, library: str, owner: str) -> Misfit | None:
    """misfit() of a checkpoint file, once per process (by content: `sha256`)."""
    from runner.checkpoints.safe_load import load_checkpoint_file
    return misfit(config, library, load_checkpoint_file(checkpoint, owner=owner))


def fitting_entry(checkpoint: str, group: str, entry) -> str | None:
    """The registry model of `group` (same family) the checkpoint fits, if any:
    the one whose official file name the checkpoint's starts with first."""
    from runner.checkpoints.download import file_name_of
    from runner.checkpoints.safe_load import load_checkpoint_file
    from runner.models.registry import entries
    library = "mmdet" if group == "detect" else "mmpose"
    candidates = [e for e in entries(group) if e.get("family") == entry.get("family") and e.get("config")
                  and e["name"] != entry.get("name")]
    name = Path(checkpoint).name
    candidates.sort(key=lambda e: not name.startswith(Path(file_name_of(str(e["checkpoint"]))).stem))
    state = load_checkpoint_file(checkpoint)
    return next((str(e["name"]) for e in candidates if misfit(str(e["config"]), library, state) is None), None)


def check_fits(checkpoint: str, sha256: str, config: str, library: str, owner: str, memo: Path | None = None,
               entry=None, role: str | None = None) -> None:
    """One line (a RunnerError) when the checkpoint does not fit the model of
    `config`: the model (`role`/model=NAME of `entry` when given), one weight
    that does not fit with both shapes, and the fix (the registry model of the
    same family it fits, when there is one)."""
    key = memo_key(sha256, config, library)
    memo_file = memo / "fits" / f"{key}.json" if memo is not None else None
    if memo_file is not None and remembered(memo_file, key):
        return
    found = _checked(checkpoint, sha256, config, library, owner)
    if found is None:
        if memo_file is not None:
            try:
                atomic.write_json(memo_file, {"key": key, "checkpoint": sha256, "config": config, "fits": True})
            except OSError:  # a read-only cache: the memo only saves time
                pass
        return
    if entry is None:
        raise RunnerError(f"{owner}={checkpoint} does not fit the model of {config}: {found.example()} "
                          f"({found.counts()}); pass that model's checkpoint")
    name = entry.get("name")
    fits = fitting_entry(checkpoint, role, entry)
    fix = (f"pass {role}/model={fits} (the model it fits), or the checkpoint of {name}" if fits else
           f"pass the checkpoint of {name} (or leave {owner} unset for the registry's)")
    raise RunnerError(f"{owner}={checkpoint} does not fit {role}/model={name}: {found.example()} "
                      f"({found.counts()}); {fix}")


def memo_key(sha256: str, config: str, library: str) -> str:
    """What a verdict holds for: the checkpoint's content, the config's identity
    and the libraries that build the model."""
    from runner.models.configs import config_identity
    return digest({"checkpoint": sha256, "config": config_identity(config),
                   "libs": versions("torch", "mmengine", library)})


def remembered(memo_file: Path, key: str) -> bool:
    """Whether the memo says the checkpoint fits. Only a memo that names its own
    key counts: an unreadable one, or one written for another checkpoint or
    config (copied, restored to the wrong name), says nothing."""
    try:
        found = json.loads(memo_file.read_text())
        return isinstance(found, dict) and found.get("key") == key and found.get("fits") is True
    except (OSError, ValueError):
        return False
