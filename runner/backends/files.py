"""Derived files the runner makes once and trusts only after checking them:
ONNX exports and int8 networks (OpenVINO IR). Each has a JSON record beside it
(its output structure, its files' sha256, what the native engine needs to
know of its model); a file is checked against its record before every use
(through the hasher's stat memo: a file whose size, mtime and ctime are unchanged is
not read again) and made again when it is damaged or altered. Where its
folder cannot be written, it is made in a scratch folder for this process.
No torch here: the ONNX-native engine finds and checks exports without it."""
from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from runner import atomic
from runner.hashing import FileHasher, digest
from runner.versions import versions

log = logging.getLogger(__name__)
HASHER = FileHasher(None)  # set to the cache's memo by the run (set_hasher)


def set_hasher(hasher: FileHasher) -> None:
    global HASHER
    HASHER = hasher


OPSET = 17  # the ONNX opset of the runner's exports


@dataclass(frozen=True)
class ExportSpec:
    """A registry model's export: what names it and what makes it."""
    name: str                     # a readable file-name stem
    checkpoint: str               # the .pth file
    checkpoint_sha256: str
    config: str                   # the model config's spec (mmpose::...)
    library: str                  # "mmdet" or "mmpose"
    input_size: tuple[int, int]   # (w, h)
    folder: str                   # backend.dir
    owner: str = "the model's checkpoint"  # the config key that gave the checkpoint, for messages

    @classmethod
    def of(cls, checkpoint: str, checkpoint_sha256: str, config: str, library: str, input_size, folder: str,
           owner: str = "the model's checkpoint") -> "ExportSpec":
        """The spec of a checkpoint's export, named after the checkpoint's file."""
        return cls(Path(checkpoint).stem.split("_local")[0][:48], checkpoint, checkpoint_sha256, config, library,
                   tuple(int(v) for v in input_size), folder, owner)

    @property
    def path(self) -> Path:
        from runner.models.configs import config_identity
        key = {"name": self.name, "checkpoint": self.checkpoint_sha256, "config": config_identity(self.config)}
        return export_path(key, Path(self.folder), (1, 3, self.input_size[1], self.input_size[0]), OPSET)


def verified_export(spec: ExportSpec, make) -> Path:
    """The verified export of `spec`, made first by `make(spec, path)` (with
    torch: the reference engine's make_export) unless it is there."""
    return verified(spec.path, "exporting", lambda path: make(spec, path))


def export_settings(input_shape: tuple[int, ...], opset: int) -> dict:
    """What an export depends on besides its checkpoint and config."""
    return {"opset": opset, "input": list(input_shape[1:]), "dynamic": ["batch", "height", "width"],
            "libs": versions("torch", "mmcv", "mmdet", "mmpose", "onnx")}


def export_path(key: dict, folder: Path, input_shape: tuple[int, ...], opset: int) -> Path:
    """Where the export of `key` ({name, checkpoint sha256, config identity}) lives."""
    return folder / f"{key['name']}-{digest({**key, **export_settings(input_shape, opset)})[:16]}.onnx"


def record(path: Path) -> dict:
    """The JSON record beside `path`: its output structure and sha256 (one file:
    "sha256"; several, as OpenVINO IR's .xml + .bin: "files" by name)."""
    return json.loads(path.with_suffix(".json").read_text())


def recorded_files(path: Path, rec: dict) -> dict[Path, str]:
    if "files" in rec:
        return {path.with_name(name): sha for name, sha in rec["files"].items()}
    return {path: rec["sha256"]}


def damage(path: Path) -> str | None:
    """Why the file at `path` cannot be used (None: it is whole and unaltered)."""
    if not path.exists() and not path.with_suffix(".json").exists():
        return "missing"
    try:
        for file, recorded in recorded_files(path, record(path)).items():
            found = HASHER.sha256(file)
            if found != recorded:
                return f"{file.name}: sha256 {found[:12]} is not the recorded {recorded[:12]}"
    except (OSError, ValueError, KeyError) as err:
        return f"unreadable ({type(err).__name__})"
    return None


def verified(path: Path, doing: str, make) -> Path:
    """`path`, whole and unaltered; made by `make(path)` under a lock first unless it
    is (in a scratch folder for this process where its folder cannot be written)."""
    if damage(path) is not None:
        if not atomic.writable(path.parent):
            path = scratch_folder(path.parent) / path.name
        with atomic.locked(str(path) + ".lock", f"{doing} {path.name}"):
            why = damage(path)
            if why is not None:
                if why != "missing":
                    log.warning("%s is %s: %s it again", path, why, doing)
                make(path)
    with contextlib.suppress(OSError):  # last use, for `cache gc`: on the record, so the file's stat memo holds
        os.utime(path.with_suffix(".json"))
    return path


def install(path: Path, save, record_fields: dict) -> None:
    """`save(scratch_path)` writes a network (and its weights, `.bin`, if it has
    any) into a scratch folder beside `path`; both are moved into place, then
    the .json record with their sha256 and `record_fields`, last: until it is
    written, the network counts as missing."""
    from runner.hashing import sha256_file
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=path.parent, prefix=".making-"))
    try:
        save(scratch / path.name)
        files = {}
        for name in (path.name, path.with_suffix(".bin").name):
            if (scratch / name).exists():
                files[name] = sha256_file(scratch / name)
                os.replace(scratch / name, path.parent / name)
        atomic.write_json(path.with_suffix(".json"), {**record_fields, "files": files})
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


_scratch: dict[Path, Path] = {}


def scratch_folder(folder: Path) -> Path:
    """A folder for this process's exports when `folder` cannot be written."""
    if folder not in _scratch:
        _scratch[folder] = Path(tempfile.mkdtemp(prefix="pose-runner-onnx-"))
        atexit.register(shutil.rmtree, _scratch[folder], True)
        log.warning("backend.dir %s cannot be written: exporting into %s for this run only (set backend.dir "
                    "to a writable folder to keep exports)", folder, _scratch[folder])
    return _scratch[folder]
