"""The run folder: where a run's files go. Every per-item file is named after
its item's input name (its path relative to the input folder, extension kept),
so no two items share a file and no name leaves the folder.

A run folder holds one run. A folder Hydra just made holds only its own
records (.hydra/, the job's .log); a folder that holds an earlier run of ours
(its manifest.json says so) is cleared of that run's files first, and the new
manifest records what was removed; any other folder (`/`, a home folder, a
file) is refused before anything is written."""
from __future__ import annotations

import json
import shutil
from pathlib import Path, PurePosixPath

from runner import atomic
from runner.errors import RunnerError

# What a run writes (and only this is ever removed from a re-used run folder).
RUN_FOLDERS = ("overlays", "predictions", "openpose", "tables", "trc", ".series")
RUN_FILES = ("results_coco.json", "metrics.json", "manifest.json")


def _hydras_own(entry: Path) -> bool:
    return entry.name == ".hydra" or (entry.is_file() and entry.suffix == ".log")


def previous_manifest(root: Path) -> dict | None:
    """The manifest of the run this folder holds, if it holds one of ours."""
    try:
        manifest = json.loads((root / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) and "status" in manifest and "config" in manifest else None


def check_run_folder(root: Path) -> dict | None:
    """Refuse a folder a run must not write into; return the manifest of the
    earlier run it holds (None: new, or only Hydra's records)."""
    if root.exists() and not root.is_dir():
        raise RunnerError(f"the run folder {root} is a file: pass a folder (hydra.run.dir=DIR, or output_dir= "
                          "in the Python API)")
    if not root.is_dir():
        return None
    others = sorted(e.name for e in root.iterdir() if not _hydras_own(e))
    if not others:
        return None
    previous = previous_manifest(root)
    if previous is None:
        raise RunnerError(f"the run folder {root} holds files that are not a pose-runner run (e.g. {others[0]}): "
                          "pass a new or empty folder (hydra.run.dir=DIR)")
    return previous


def claim_run_folder(root: Path) -> dict | None:
    """Make `root` this run's folder: check it, and clear the files an earlier
    run wrote there. Returns what the new manifest records of that run."""
    previous = check_run_folder(root)
    root.mkdir(parents=True, exist_ok=True)
    if previous is None:
        return None
    removed = []
    for name in RUN_FOLDERS + RUN_FILES:
        path = root / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
        else:
            continue
        removed.append(name)
    return {"started": previous.get("started"), "status": previous.get("status"), "removed": removed}


class RunFolder:
    def __init__(self, root: Path):
        self.root = Path(root)
        self._owners: dict[Path, str] = {}

    def path(self, kind: str, name: str, ext: str) -> Path:
        """<root>/<kind>/<name>.<ext>, or <name> itself when it already ends in
        .<ext> (an overlay of x.jpg is overlays/x.jpg; of x.png, overlays/x.png.jpg;
        the predictions of x.jpg are predictions/x.jpg.json)."""
        relative = PurePosixPath(name)
        if relative.is_absolute() or ".." in relative.parts or not relative.parts:
            raise RunnerError(f"cannot name an output after {name!r}: input names must be relative "
                              "paths inside the input folder")
        file = name if name.lower().endswith(f".{ext.lower()}") else f"{name}.{ext}"
        path = self.root / kind / file
        owner = self._owners.setdefault(path, name)
        if owner != name:
            raise RunnerError(f"inputs {owner} and {name} would both write {path}: rename one of them")
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def write(self, kind: str, name: str, ext: str, data: bytes) -> Path:
        path = self.path(kind, name, ext)
        atomic.write_bytes(path, data)
        return path
