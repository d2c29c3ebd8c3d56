"""The run folder: where a run's files go. Every per-item file is named after
its item's input name (its path relative to the input folder, extension kept),
so no two items share a file and no name leaves the folder; an input whose
files' names the file system cannot take fails alone.

A run folder holds one run. A folder Hydra just made holds only its own
records (.hydra/, the job's .log); a folder that holds an earlier run of ours
(its manifest.json says so) is taken over all or nothing: that run's files are
first moved aside into one hidden folder inside it, then deleted, and the new
manifest records what was removed; when any of them cannot be moved or
deleted (a read-only folder), what was moved is moved back and the run is
refused in one line. Any other folder (`/`, a home folder, a file), or one
that cannot be written, is refused before anything is written."""
from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path, PurePosixPath

from runner import atomic
from runner.errors import RunnerError

# What a run writes (and only this is ever removed from a re-used run folder).
RUN_FOLDERS = ("overlays", "predictions", "openpose", "tables", "trc", ".series")
RUN_FILES = ("results_coco.json", "metrics.json", "manifest.json")
ASIDE = ".previous-run-"  # + a token: an earlier run's files on their way out


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
    if not atomic.writable(root):
        raise RunnerError(f"the run folder {root} cannot be written (a read-only file system, or no permission): "
                          "pass a folder you can write (hydra.run.dir=DIR, or output_dir= in the Python API)")
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
    """Make `root` this run's folder: check it, and take the files an earlier
    run wrote there out of it, all or nothing. Returns what the new manifest
    records of that run."""
    previous = check_run_folder(root)
    root.mkdir(parents=True, exist_ok=True)
    if previous is None:
        return None
    earlier = [root / n for n in RUN_FOLDERS + RUN_FILES if (root / n).exists() or (root / n).is_symlink()]
    stuck = next((p for p in earlier if not _removable(p)), None)
    if stuck is not None:
        raise _cannot_take_over(root, stuck)
    aside = root / f"{ASIDE}{secrets.token_hex(4)}"
    moved: list[Path] = []
    try:
        aside.mkdir()
        for path in earlier:
            os.rename(path, aside / path.name)
            moved.append(path)
    except OSError as err:
        for path in reversed(moved):  # the earlier run as it was
            os.rename(aside / path.name, path)
        if aside.is_dir():
            aside.rmdir()
        raise _cannot_take_over(root, Path(err.filename or root)) from None
    for left in [aside, *root.glob(f"{ASIDE}*")]:  # also what an earlier take-over could not delete
        shutil.rmtree(left, ignore_errors=True)
    return {"started": previous.get("started"), "status": previous.get("status"),
            "removed": [p.name for p in earlier]}


def _removable(path: Path) -> bool:
    """Whether `path` can be moved out of its folder and deleted, with all it holds."""
    if not os.access(path.parent, os.W_OK):
        return False
    if path.is_symlink() or not path.is_dir():
        return True
    return all(os.access(top, os.W_OK) for top, _, _ in os.walk(path))


def _cannot_take_over(root: Path, stuck: Path) -> RunnerError:
    return RunnerError(f"the run folder {root} holds an earlier run whose {stuck.name} cannot be removed (read-only, "
                       "or no permission): the earlier run is left as it was; pass another folder (hydra.run.dir=DIR) "
                       "or make this one writable")


def name_limit(folder: Path) -> int:
    """The longest file name, in bytes, the file system holding `folder` takes."""
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


class RunFolder:
    def __init__(self, root: Path, video_files: tuple[str, ...] = ()):
        """`video_files`: what else the run names after a video ({name}, {stem}: its
        tables, its OpenPose frames), besides every input's predictions/{name}.json."""
        self.root = Path(root)
        self.video_files = video_files
        self._owners: dict[Path, str] = {}
        self._limit: int | None = None

    def name_error(self, name: str, video: bool = False) -> str | None:
        """Why an input called `name` cannot have its files here (a name longer
        than the file system takes), if so: that input fails, the others are written."""
        if self._limit is None:
            self._limit = name_limit(self.root)
        relative = PurePosixPath(name)
        files = ["{name}.json", *(self.video_files if video else ())]
        parts = [*relative.parts[:-1], *(f.format(name=relative.name, stem=relative.stem) for f in files)]
        longest = max(parts, key=lambda part: len(os.fsencode(part)))
        size = len(os.fsencode(longest))
        if size <= self._limit:
            return None
        return (f"input {name}: the name of its output {longest} would be {size} bytes, over the {self._limit} this "
                "file system takes: rename it shorter; the other inputs are written")

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
