"""Inputs and their unit of work, the Item: one image file, one video frame or
one webcam frame. An item's `content_key` identifies its pixels' source by
content (file bytes, or the video's hash + frame index), never by path or mtime."""
from __future__ import annotations

import io
import itertools
import os
import queue
import re
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator

import cv2
import numpy as np

from runner.errors import RunnerError
from runner.hashing import FileHasher, sha256_bytes

# FFmpeg's decoder messages (pages of them for a damaged video): our one-line
# errors say what matters. Read by OpenCV when it first opens a video.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

IMAGE_EXTS = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg"}


class BadItem(RunnerError):
    """One input item could not be read; the run goes on without it."""


@dataclass
class Item:
    id: str                      # stable name: "000000000785.jpg", "demo.mp4#000012"
    name: str                    # the input it comes from, relative to the input folder: "demo.mp4"
    source: str                  # the file (or webcam) it comes from
    content_key: str             # sha256 hex of what the pixels are decoded from
    frame_index: int | None = None
    data: bytes | None = field(default=None, repr=False)      # encoded image file
    error: str | None = None     # why it could not be read, if it could not
    _image: np.ndarray | None = field(default=None, repr=False)

    def image(self) -> np.ndarray:
        """The BGR image, decoded once (as mmcv.imfrombytes does: cv2, colour)."""
        if self._image is None:
            if self.error or self.data is None:
                raise BadItem(self.error or f"{self.source}: no image data")
            try:
                img = cv2.imdecode(np.frombuffer(self.data, np.uint8), cv2.IMREAD_COLOR)
            except cv2.error:  # an empty buffer, or more pixels than OpenCV allows, raise
                img = None
            if img is None:
                raise BadItem(f"cannot decode image {self.source}: the file is corrupt or not an "
                              "image; replace or remove it and re-run (finished items are kept)")
            self._image = img
        return self._image

    def release(self) -> None:
        """Drop pixels and bytes once the item's chunk is done (bounded memory)."""
        self._image = None
        self.data = None


def decode_all(items: Iterable[Item], pool: ThreadPoolExecutor | None = None) -> None:
    """Decode several items at once (cv2 releases the GIL while decoding)."""
    items = [i for i in items if i._image is None]
    if pool is None or len(items) < 2:
        for item in items:
            item.image()
    else:
        list(pool.map(Item.image, items))


# -- sources -------------------------------------------------------------------

class Source:
    """An ordered stream of items."""
    kind: str = ""
    name: str = ""

    def __iter__(self) -> Iterator[Item]:
        raise NotImplementedError

    def describe(self) -> dict:
        return {"kind": self.kind, "path": self.name}


def declared_pixels(data: bytes) -> int | None:
    """width x height as the image file's header declares it (no decoding), or
    None when Pillow cannot read the header (OpenCV may still decode it)."""
    from PIL import Image
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with Image.open(io.BytesIO(data)) as image:
                return image.width * image.height
        except Image.DecompressionBombError as err:  # over twice Pillow's own limit: its message says the size
            found = re.search(r"\((\d+) pixels\)", str(err))
            return int(found.group(1)) if found else None
        except Exception:
            return None


class ImageFiles(Source):
    kind = "images"

    def __init__(self, paths: list[Path], root: Path | None, max_pixels: int | None = None):
        self.paths, self.root, self.max_pixels = paths, root, max_pixels
        self.name = str(root if root is not None else paths[0])

    def __len__(self) -> int:
        return len(self.paths)

    def names(self) -> list[str]:
        """The items' names (paths relative to the folder), known before reading any."""
        return [path.relative_to(self.root).as_posix() if self.root else path.name for path in self.paths]

    def __iter__(self) -> Iterator[Item]:
        for path, name in zip(self.paths, self.names()):
            try:
                data = path.read_bytes()
            except OSError as err:  # permissions, a broken link, a link loop, a folder named x.jpg
                yield Item(id=name, name=name, source=str(path), content_key="",
                           error=f"cannot read {path}: {err.strerror}; fix or remove it and re-run")
                continue
            pixels = declared_pixels(data) if self.max_pixels else None
            if pixels is not None and pixels > self.max_pixels:
                yield Item(id=name, name=name, source=str(path), content_key="",
                           error=f"image {path} declares {pixels:,} pixels, over max_pixels={self.max_pixels:,}: "
                                 "not decoded; shrink it, or raise max_pixels if it is real")
                continue
            yield Item(id=name, name=name, source=str(path), content_key=sha256_bytes(data), data=data)


class VideoFrames(Source):
    kind = "video"

    def __init__(self, path: Path, hasher: FileHasher, max_frames: int | None = None):
        self.path, self.max_frames = path, max_frames
        self.name = str(path)
        self.video_key = hasher.sha256(path)
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise RunnerError(f"cannot open video {path}: the file is corrupt or its codec is "
                              "not supported by OpenCV; convert it (e.g. to H.264 .mp4) and re-run")
        self.fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()

    def __len__(self) -> int:
        n = self.frame_count
        return min(n, self.max_frames) if self.max_frames else n

    def __iter__(self) -> Iterator[Item]:
        cap = cv2.VideoCapture(str(self.path))
        decoded = 0
        for index, frame in read_frames(cap, self.max_frames):
            key = sha256_bytes(f"{self.video_key}:frame:{index}".encode())
            decoded += 1
            yield Item(id=f"{self.path.name}#{index:06d}", name=self.path.name, source=str(self.path),
                       content_key=key, frame_index=index, _image=frame)
        if not decoded and self.max_frames != 0:
            yield Item(id=self.path.name, name=self.path.name, source=str(self.path), content_key="",
                       error=f"video {self.path} decoded no frames (of {self.frame_count} it declares): its frames are "
                             "corrupt or their codec is not supported by OpenCV; convert it (e.g. to H.264 .mp4)")

    def describe(self) -> dict:
        return {**super().describe(), "sha256": self.video_key, "fps": self.fps}


def read_frames(cap, max_frames: int | None) -> Iterator[tuple[int, np.ndarray]]:
    """(index, frame) from an opened cv2.VideoCapture, until it ends or max_frames; releases it."""
    try:
        for index in itertools.count():
            if max_frames is not None and index >= max_frames:
                break
            ok, frame = cap.read()
            if not ok:
                break
            yield index, frame
    finally:
        cap.release()


class Webcam(Source):
    """Live frames; each frame is keyed by the hash of its pixels."""
    kind = "webcam"

    def __init__(self, index: int, max_frames: int | None = None):
        self.index, self.max_frames = index, max_frames
        self.name = f"webcam:{index}"
        self.fps = 25.0

    def __iter__(self) -> Iterator[Item]:
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # our error says it in one line
        try:
            cap = cv2.VideoCapture(self.index)
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not cap.isOpened():
            raise RunnerError(f"cannot open webcam {self.index}: no camera at that index; "
                              "check the device (ls /dev/video*) or pass input=webcam:N")
        for index, frame in read_frames(cap, self.max_frames):
            yield Item(id=f"webcam{self.index}#{index:06d}", name=f"webcam{self.index}", source=self.name,
                       content_key=sha256_bytes(frame.tobytes()), frame_index=index, _image=frame)


def open_source(spec: str, hasher: FileHasher, max_frames: int | None = None,
                max_pixels: int | None = None) -> Source:
    """An image, a folder of images, a video file, or `webcam` / `webcam:N`."""
    spec = str(spec)
    if spec == "webcam" or spec.startswith("webcam:"):
        index = spec.partition(":")[2] or "0"
        if not index.isdigit():
            raise RunnerError(f"input={spec}: the webcam index must be a number, e.g. input=webcam:0")
        return Webcam(int(index), max_frames)
    path = Path(spec).expanduser()
    hint = "pass input=PATH to an image, a folder of images, a video file, or webcam[:N]"
    if not path.exists():
        raise RunnerError(f"input {spec} does not exist: {hint}")
    if path.is_dir():
        # every entry named like an image: one that cannot be read (a broken or
        # looping link, no permission) becomes a failed item, listed, not skipped
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
        if not images:
            raise RunnerError(f"folder {spec} has no images ({', '.join(sorted(IMAGE_EXTS))}): {hint}")
        return ImageFiles(images, path, max_pixels)
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTS:
        return VideoFrames(path, hasher, max_frames)
    if suffix in IMAGE_EXTS:
        return ImageFiles([path], None, max_pixels)
    raise RunnerError(f"input {spec} is neither an image ({', '.join(sorted(IMAGE_EXTS))}) "
                      f"nor a video ({', '.join(sorted(VIDEO_EXTS))}): {hint}")


def prefetch(items: Iterable[Item], depth: int = 16) -> Iterator[Item]:
    """Read (and hash, and for videos decode) items in a background thread,
    ahead of the model."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def produce():
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as err:  # surfaced in the consumer
            q.put(err)

    thread = threading.Thread(target=produce, name="prefetch", daemon=True)
    thread.start()
    try:
        while True:
            got = q.get()
            if got is done:
                return
            if isinstance(got, BaseException):
                raise got
            yield got
    finally:
        stop.set()
