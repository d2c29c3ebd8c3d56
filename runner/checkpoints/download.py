"""Resolve a model's checkpoint (URL, local path, or offline mirror) to a
verified file in the checkpoint cache.

OpenMMLab publishes checkpoints under names that end in the first hex digits
of their sha256 (`...-e48f03d0_20230504.pth`, `...-235e8209.pth`); every file
with such a name is checked against it. A model entry may pin the whole sha256
of its official file (`sha256:`, MediaPipe's models): a file fetched for its URL
(downloaded, mirrored or cached) is checked against it too. Downloads go to a `.part` file that is
resumed (HTTP Range) after an interruption and renamed into place only once
verified, under a lock, so parallel runs fetch each file once.
"""
from __future__ import annotations

import logging
import re
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote, urlparse


from runner import atomic, console
from runner.errors import RunnerError
from runner.hashing import FileHasher, digest, sha256_file

log = logging.getLogger(__name__)

_SUFFIX = re.compile(r"[-_]([0-9a-f]{7,8})(?:_(\d{8}))?\.pth$")
_CHUNK = 1 << 20


def expected_hash_prefix(file_name: str) -> str | None:
    """The sha256 prefix an OpenMMLab file name carries, if it carries one.
    A bare date (`...-20231122.pth`, as some RTMW files are named) is not a hash."""
    found = _SUFFIX.search(file_name)
    if not found:
        return None
    prefix, date = found.groups()
    if date is None and _is_date(prefix):
        return None
    return prefix


def _is_date(text: str) -> bool:
    try:
        datetime.strptime(text, "%Y%m%d")
        return True
    except ValueError:
        return False


def is_url(spec: str) -> bool:
    return urlparse(spec).scheme in ("http", "https")


def file_name_of(spec: str) -> str:
    return Path(unquote(urlparse(spec).path)).name if is_url(spec) else Path(spec).name


@dataclass(frozen=True)
class Checkpoint:
    path: Path
    sha256: str
    origin: str      # "cache", "mirror", "download" or "local"
    # An ONNX model's external data files (name relative to the model, sha256): part of its weights
    external: tuple[tuple[str, str], ...] = ()


class ChecksumMismatch(RunnerError):
    pass


class CheckpointResolver:
    def __init__(self, cache_dir: str | Path, mirror: str | Path | None = None,
                 timeout_s: float = 30, hasher: FileHasher | None = None):
        self.cache_dir = Path(cache_dir).expanduser()
        self.mirror = Path(mirror).expanduser() if mirror else None
        self.timeout_s = timeout_s
        self.hasher = hasher or FileHasher(None)
        if self.mirror is not None and not self.mirror.is_dir():
            raise RunnerError(f"download.mirror={mirror} is not a folder: pass a folder that "
                              "holds checkpoints under their official file names")

    def resolve(self, spec: str, owner: str, fetch: bool = True, sha256: str | None = None,
                pinned_by: str = "the model entry's sha256") -> Checkpoint | None:
        """`owner` names the config key to set instead (e.g. `pose.model.checkpoint`) in messages.
        With fetch=False (dry runs) nothing is downloaded; None when not at hand. `sha256`:
        the whole hash a file fetched for a URL must have (`pinned_by` names its key)."""
        if not is_url(spec):
            return self._local(spec, owner)
        pin = Pin(sha256.lower(), pinned_by, owner) if sha256 else None
        name = file_name_of(spec)
        cached = self.cache_dir / self.cached_name(spec)
        if cached.is_file():
            try:
                return Checkpoint(cached, self._verified(cached, pin), "cache")
            except ChecksumMismatch as err:
                log.warning("%s; fetching it again", err)
                cached.unlink()
        if self.mirror is not None and (self.mirror / name).is_file():
            source = self.mirror / name
            digest = self._verified(source, pin)
            with atomic.atomic_path(cached) as tmp:
                shutil.copyfile(source, tmp)
            return Checkpoint(cached, digest, "mirror")
        if not fetch:
            return None
        if not atomic.writable(self.cache_dir):
            raise RunnerError(f"cannot download {name}: {self.cache_dir} cannot be written (read-only?); pass "
                              f"download.dir=A_WRITABLE_FOLDER, download.mirror=FOLDER or {owner}=PATH")
        with atomic.locked(self.cache_dir / ".locks" / f"{cached.relative_to(self.cache_dir)}.lock",
                           f"downloading {name}"):
            if cached.is_file():  # another process fetched it while we waited
                return Checkpoint(cached, self._verified(cached, pin), "cache")
            self._download(spec, cached, owner, pin)
            return Checkpoint(cached, self._verified(cached, pin), "download")

    @staticmethod
    def cached_name(url: str) -> str:
        """Where a URL's file is kept, relative to download.dir. A name that carries
        its sha256 prefix (OpenMMLab's) is its content's: one file whatever the
        URL. Any other name (`best.pth`) may stand for other weights at another
        URL, so it is kept under its URL's digest."""
        name = file_name_of(url)
        if expected_hash_prefix(name) is not None:
            return name
        return f"by-url/{digest(url)[:16]}/{name}"

    # -- helpers -------------------------------------------------------------
    def _local(self, spec: str, owner: str) -> Checkpoint:
        path = Path(spec).expanduser()
        if path.is_dir():
            raise RunnerError(f"checkpoint {spec} is a folder: pass {owner}=PATH to the .pth file in it")
        if not path.is_file():
            raise RunnerError(f"checkpoint {spec} does not exist: pass {owner}=PATH_OR_URL")
        sha = self._verified(path)
        return Checkpoint(path.resolve(), sha, "local", self._external(path.resolve(), sha, owner))

    def _external(self, path: Path, sha: str, owner: str) -> tuple[tuple[str, str], ...]:
        """An ONNX model's external data files, each by content (a model saved with
        onnx's save_as_external_data keeps its weights beside it)."""
        if path.suffix.lower() != ".onnx":
            return ()
        found = []
        for name in self.hasher.of_content("onnx-external-data", sha, lambda: external_data_names(path)):
            part = (path.parent / name).resolve()
            if path.parent.resolve() not in part.parents:
                raise RunnerError(f"ONNX model {path} keeps weights in {name}, outside its folder: save it with its "
                                  "external data beside it, or as one file")
            if not part.is_file():
                raise RunnerError(f"ONNX model {path} keeps its weights in {name}, which is not beside it: put "
                                  f"{name} next to the model, or pass {owner}= the model saved as one file")
            found.append((name, self.hasher.sha256(part)))
        return tuple(found)

    def _verified(self, path: Path, pin: "Pin | None" = None) -> str:
        digest = self.hasher.sha256(path)
        prefix = expected_hash_prefix(path.name)
        if prefix is not None and not digest.startswith(prefix):
            raise ChecksumMismatch(
                f"checkpoint {path} is corrupt: its sha256 starts with {digest[:8]}, but its "
                f"name says {prefix}; delete it and re-run to fetch it again")
        if pin is not None and digest != pin.sha256:
            raise ChecksumMismatch(f"{path} has sha256 {digest[:12]}..., not {pin.sha256[:12]}... as {pin.key} pins: "
                                   f"{pin.fix}")
        return digest

    def _download(self, url: str, dest: Path, owner: str, pin: "Pin | None" = None) -> None:
        """Fetch `url` into `dest` through a `.part` file that a later attempt
        resumes (HTTP Range); `dest` appears only once the file is verified."""
        import http.client  # here: 25 ms of imports a run with its files on disk never needs
        import urllib.error
        import urllib.request
        with atomic.resumable_path(dest) as part:
            have = part.stat().st_size if part.exists() else 0
            request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
            try:
                with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                    resumed = have and response.status == 206
                    total = response.length
                    done = have if resumed else 0
                    with open(part, "ab" if resumed else "wb") as out, console.progress(
                            total=(total + done) if total else None, initial=done, unit="B",
                            unit_scale=True, desc=f"download {dest.name}", leave=False) as bar:
                        while chunk := response.read(_CHUNK):
                            out.write(chunk)
                            bar.update(len(chunk))
                    if total is not None and part.stat().st_size < total + done:
                        raise http.client.IncompleteRead(b"", total + done - part.stat().st_size)
            except urllib.error.HTTPError as err:
                if not (err.code == 416 and have):  # 416: the .part is already whole
                    raise _unreachable(url, f"HTTP {err.code} {err.reason}", dest, owner) from None
            except http.client.HTTPException as err:  # the connection dropped mid-file: keep the .part
                got = part.stat().st_size if part.exists() else 0
                raise RunnerError(f"downloading {url} stopped after {got:,} bytes ({type(err).__name__}): "
                                  "re-run to resume it") from None
            except (urllib.error.URLError, OSError) as err:
                raise _unreachable(url, getattr(err, "reason", None) or err, dest, owner) from None
            prefix = expected_hash_prefix(dest.name)
            found = sha256_file(part)
            if prefix is not None and not found.startswith(prefix):
                part.unlink()
                raise ChecksumMismatch(
                    f"downloaded {url} but its sha256 starts with {found[:8]}, not {prefix} as its "
                    "name says: the server sent a different file; re-run to try again, or use "
                    "download.mirror=FOLDER with a verified copy")
            if pin is not None and found != pin.sha256:
                part.unlink()
                raise ChecksumMismatch(f"downloaded {url} but its sha256 is {found[:12]}..., not {pin.sha256[:12]}... "
                                       f"as {pin.key} pins: the server sent a different file; {pin.fix}")
        log.info("downloaded %s", dest)


@dataclass(frozen=True)
class Pin:
    """The whole sha256 a model entry pins for the file of its URL."""
    sha256: str
    key: str     # the config key that pins it (pose.model.sha256)
    owner: str   # the config key that names the file (pose.model.path)

    @property
    def fix(self) -> str:
        return (f"use the official file (download.mirror=FOLDER with a verified copy), or another file with "
                f"{self.owner}=PATH_OR_URL and {self.key}=ITS_SHA256 (or null)")


def _unreachable(url: str, reason, dest: Path, owner: str) -> RunnerError:
    return RunnerError(f"cannot download {url} ({reason}): put {dest.name} in a folder and pass "
                       f"download.mirror=FOLDER, or pass {owner}=PATH")


def external_data_names(path: Path) -> list[str]:
    """The files an ONNX model's tensors name as their external data (relative to it)."""
    import onnx
    from onnx.external_data_helper import _get_all_tensors, uses_external_data
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # not an ONNX file: the runtime's own check says so, in one line
        return []
    names = {entry.value for tensor in _get_all_tensors(model) if uses_external_data(tensor)
             for entry in tensor.external_data if entry.key == "location"}
    return sorted(names)
