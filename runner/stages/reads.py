"""What a cached stage's results are computed from, declared in one place.

DVC keys a stage by every dependency it declares; a cached stage here does the
same, in its `reads()`:

    files    every file its results depend on, by content: a checkpoint or an
             ONNX model and its external data, the model config (its text and
             _base_ files), MMDeploy's pipeline.json, the keypoint set's file,
             the int8 calibration images, the ground truth
    params   its own parameters as plain data (a native model's resolved
             description among them: what the engine really computes with)
    code     the classes that compute its results: each one's code_version
             (tests/code_identity.py fingerprints the modules each one computes
             with, and fails when they change and the version does not)
    libs     the libraries whose versions change its numbers
    runs_on  the backend, the kind of device and the precision

Everything else follows from it: each key of the stage (a unit's own input +
key_parts), the manifest's `stages.NAME.reads`, replay's check that every file
still has the content the run read (check_files), and a merge's keys, rebuilt
with the library versions the shards recorded (key_parts(recorded))."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import RunnerError
from runner.versions import versions


@dataclass(frozen=True)
class FileRead:
    """A file (or a set of files, such as a config and its _base_ files) by content."""
    path: str
    sha256: str

    def as_dict(self) -> dict:
        return {"path": self.path, "sha256": self.sha256}


@dataclass
class Reads:
    files: dict[str, FileRead] = field(default_factory=dict)  # what the file is to the stage -> the file
    params: dict = field(default_factory=dict)
    code: tuple[type, ...] = ()
    libs: tuple[str, ...] = ()
    runs_on: dict = field(default_factory=dict)

    def code_versions(self) -> dict[str, int]:
        return {f"{c.__module__}.{c.__qualname__}": int(c.code_version) for c in self.code}

    def key_parts(self, recorded_libs: dict | None = None) -> dict:
        """The run-wide components of every key: files, params, code. A merge
        passes the library versions its shards recorded: their entries are what
        it reads, computed there with those."""
        libs = recorded_libs if recorded_libs is not None else versions(*self.libs)
        return {"model": {role: f.sha256 for role, f in self.files.items()}, "params": self.params,
                "code": {"classes": self.code_versions(), "libs": libs, **self.runs_on}}

    def as_manifest(self, recorded_libs: dict | None = None) -> dict:
        return {"files": {role: f.as_dict() for role, f in self.files.items()}, "params": self.params,
                "code": self.code_versions(),
                "libs": recorded_libs if recorded_libs is not None else versions(*self.libs),
                "runs_on": self.runs_on}


def check_files(stage: str, now: Reads, recorded: dict) -> None:
    """One line when a file the recorded run read has other content now (replay)."""
    was = (recorded or {}).get("files") or {}
    for role, then in was.items():
        found = now.files.get(role)
        if found is None:
            raise RunnerError(f"the {stage} step read {role} {then['path']} in the recorded run, and reads no "
                              f"{role} now: replay needs the same models and files")
        if found.sha256 != then["sha256"]:
            raise RunnerError(f"the {stage} step's {role} changed since the run: {found.path} is "
                              f"{found.sha256[:12]} now, the run read {then['sha256'][:12]} ({then['path']})")


def file_read(path: str | Path, hasher) -> FileRead:
    return FileRead(str(path), hasher.sha256(path))
