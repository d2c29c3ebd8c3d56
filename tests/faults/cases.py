"""What the fault suite's tests build their cases from: generated files, a
fault-injecting HTTP server on 127.0.0.1, CLI runs as subprocesses (to kill
them, to read their exit status and console). Test modules import the fixtures
they use from here."""
from __future__ import annotations

import http.server
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import zlib
from functools import partial
from pathlib import Path

import cv2
import pytest

from conftest import COCO, ROOT

GOOD = sorted(COCO.glob("*.jpg"))


class FaultHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder; a path under /cut/ sends half of the file and drops the
    connection, /error/ answers 500, /slow/ trickles the file."""

    def log_message(self, *args):
        pass

    def do_GET(self):
        mode, _, name = self.path.lstrip("/").partition("/")
        if mode not in ("cut", "error", "slow"):
            return super().do_GET()
        if mode == "error":
            self.send_error(500, "injected fault")
            return
        data = (Path(self.directory) / name).read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if mode == "cut":
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.connection.shutdown(2)  # the network goes away mid-file
            return
        for start in range(0, len(data), 1 << 16):
            self.wfile.write(data[start:start + (1 << 16)])
            time.sleep(0.05)


@pytest.fixture(scope="session")
def fault_server(served_dir):
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(FaultHandler, directory=str(served_dir)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}"
    httpd.shutdown()


@pytest.fixture
def small_models(small_models_in_cache, machine_dir):
    """Overrides for RTMDet-nano + RTMPose-t from local files; this machine's
    files (exports, memos) in the session's machine_dir."""
    return [*small_models_in_cache, f"cache.machine_dir={machine_dir}"]


@pytest.fixture
def small_models_in_cache(make_checkpoint):
    """Overrides for RTMDet-nano + RTMPose-t from local files; exports and memos
    in each run's cache.dir (for the tests of what a cache folder holds)."""
    det, pose = make_checkpoint("rtmdet_nano_person")[0], make_checkpoint("rtmpose_t")[0]
    return ["detect/model=rtmdet_nano_person", "pose/model=rtmpose_t", f"+download.checkpoints.rtmdet_nano_person={det}",
            f"+download.checkpoints.rtmpose_t={pose}"]


def cli(*args, env: dict | None = None, timeout: float | None = None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=timeout, **kwargs)


def one_line(done: subprocess.CompletedProcess) -> str:
    """The run failed with exactly one line on stderr; that line."""
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode != 0 and len(lines) == 1, done.stderr[-3000:]
    return lines[0]


def folder_of(tmp_path: Path, name: str, good: int = 1) -> Path:
    folder = tmp_path / name
    folder.mkdir()
    for path in GOOD[:good]:
        shutil.copy(path, folder)
    return folder


def bomb_png(path: Path, side: int = 20000) -> Path:
    """A valid grey PNG of side x side pixels (400 MB decoded), a few hundred KB on disk."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")
    packer = zlib.compressobj(9)
    row = bytes(side + 1)  # filter byte + pixels
    body = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = side.to_bytes(4, "big") * 2 + bytes([8, 0, 0, 0, 0])
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b""))
    return path


def huge_jpeg_header(path: Path) -> Path:
    """A real JPEG whose frame header claims 65000 x 65000: over OpenCV's own pixel limit."""
    data = bytearray(GOOD[0].read_bytes())
    sof = data.find(b"\xff\xc0")
    data[sof + 5:sof + 9] = (65000).to_bytes(2, "big") * 2
    path.write_bytes(bytes(data))
    return path


def zero_frame_video(path: Path) -> Path:
    """demo.mp4 with its media data zeroed: it opens, declares 5 frames, decodes none."""
    data = bytearray((COCO.parent / "video" / "demo.mp4").read_bytes())
    at = data.find(b"mdat")
    size = int.from_bytes(data[at - 4:at], "big")
    data[at + 4:at + size - 4] = bytes(size - 8)
    path.write_bytes(bytes(data))
    return path


def png_named_jpg(path: Path) -> Path:
    ok, encoded = cv2.imencode(".png", cv2.imread(str(GOOD[1])))
    path.write_bytes(encoded.tobytes())
    return path


def wait_for(predicate, timeout: float = 120.0, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return False


def run_folder_files(folder: Path) -> dict[str, bytes]:
    """Every output file of a run folder (but the manifest and Hydra's records), by relative path."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != "manifest.json" and ".hydra" not in p.parts and p.suffix != ".log"}


def kill(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    process.send_signal(sig)
    process.wait(timeout=120)


# A process of its own in which every write under one folder fails as the kernel
# fails it on a read-only mount (EROFS): for a root without mount rights, where
# neither permissions nor a mount can make a folder read-only.
EROFS_PROCESS = r"""
import builtins, errno, io, os, runpy, sys
FROZEN = os.path.realpath(sys.argv.pop(1))

def frozen(path):
    try:
        return os.path.realpath(os.fspath(path)).startswith(FROZEN)
    except TypeError:
        return False

def refuse(path):
    raise OSError(errno.EROFS, os.strerror(errno.EROFS), os.fspath(path))

def guard(call, writes=lambda *a, **k: True):
    def guarded(path, *args, **kwargs):
        if frozen(path) and writes(*args, **kwargs):
            if call is os.mkdir and os.path.exists(path):
                raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), os.fspath(path))
            refuse(path)
        return call(path, *args, **kwargs)
    return guarded

WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
os.open = guard(os.open, lambda flags, *a, **k: bool(flags & WRITE))
builtins.open = io.open = guard(io.open, lambda mode="r", *a, **k: any(c in mode for c in "wax+"))
for name in ("mkdir", "unlink", "remove", "rmdir", "utime", "chmod"):
    setattr(os, name, guard(getattr(os, name)))
for name in ("rename", "replace", "link", "symlink"):
    setattr(os, name, lambda src, dst, *a, _call=getattr(os, name), **k:
            refuse(dst) if frozen(dst) or frozen(src) else _call(src, dst, *a, **k))
_access = os.access
os.access = lambda path, mode, *a, **k: False if frozen(path) and mode & os.W_OK else _access(path, mode, *a, **k)
sys.argv[0] = "runner"
sys.path.insert(0, os.getcwd())
runpy.run_module("runner", run_name="__main__", alter_sys=True)
"""


def _mount_works(prefix: list[str], folder: Path) -> bool:
    folder.mkdir(exist_ok=True)
    probe = subprocess.run([*prefix, "sh", "-c", f"mount --bind '{folder}' '{folder}' && "
                            f"mount -o remount,ro,bind '{folder}' '{folder}'"], capture_output=True)
    return probe.returncode == 0


def read_only(cache: Path, probe: Path):
    """(how, run): `run(args)` runs the runner on `cache` made read-only by the
    first real means this machine allows: write permission taken away (any
    user but root), a read-only bind mount (in a user namespace, or as root
    with mount rights); failing all of them, the kernel's EROFS injected at
    every write call of the runner's process (EROFS_PROCESS)."""
    def command(args):
        return " ".join(f"'{a}'" for a in [sys.executable, "-m", "runner", *args])

    if os.geteuid() != 0:
        def run(args):
            subprocess.run(["chmod", "-R", "a-w", str(cache)], check=True)
            try:
                return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, capture_output=True, text=True)
            finally:
                subprocess.run(["chmod", "-R", "u+w", str(cache)], check=True)
        return "no write permission", run
    for prefix in (["unshare", "-rm"], ["unshare", "-m"]):
        if shutil.which("unshare") and _mount_works(prefix, probe):
            def run(args, prefix=prefix):
                return subprocess.run([*prefix, "sh", "-c", f"mount --bind '{cache}' '{cache}' && mount -o "
                                       f"remount,ro,bind '{cache}' '{cache}' && exec {command(args)}"],
                                      cwd=ROOT, capture_output=True, text=True)
            return "a read-only bind mount", run
    script = probe / "erofs.py"
    script.write_text(EROFS_PROCESS)
    return "EROFS on every write", lambda args: subprocess.run([sys.executable, str(script), str(cache), *args],
                                                               cwd=ROOT, capture_output=True, text=True)
