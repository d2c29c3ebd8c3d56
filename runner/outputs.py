"""The run folder: where a run's files go. Every per-item file is named after
its item's input name (its path relative to the input folder, extension kept),
so no two items share a file and no name leaves the folder."""
from __future__ import annotations

from pathlib import Path, PurePosixPath

from runner import atomic
from runner.errors import RunnerError


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
