"""Inputs and their unit of work, the Item: one image file, one video frame, or
one frame of a webcam or stream. An item's `content_key` identifies its pixels'
source by content (file bytes, or the video's hash + frame index), never by
path or mtime. Sources: an image, a video, a folder of both (recursive=true
walks sub-folders), a webcam, or a stream URL OpenCV can open."""
from __future__ import annotations

import io
import itertools
import os
import queue
import re
import stat
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

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


def kept_fps(video_fps: float, frame_stride: int) -> float:
    """Frames per second of what frame_stride keeps of a video."""
    return video_fps / frame_stride


@dataclass
class Item:
    id: str                      # stable name: "000000000785.jpg", "demo.mp4#000012"
    name: str                    # the input it comes from, relative to the input folder: "demo.mp4"
    source: str                  # the file (or webcam) it comes from
    content_key: str             # sha256 hex of what the pixels are decoded from
    frame_index: int | None = None  # the frame's index in its video (with frame_stride: every Nth)
    video_fps: float | None = None  # its video's own frames per second
    frame_stride: int = 1           # one frame in this many is kept
    video_key: str | None = None    # a video frame's video: its content hash
    data: bytes | None = field(default=None, repr=False)      # encoded image file
    error: str | None = None     # why it could not be read, if it could not
    _image: np.ndarray | None = field(default=None, repr=False)

    @property
    def fps(self) -> float | None:
        """Frames per second of what is kept of its video."""
        return None if self.video_fps is None else kept_fps(self.video_fps, self.frame_stride)

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

@dataclass(frozen=True)
class Reading:
    """How inputs are read (top-level config keys)."""
    max_frames: int | None = None   # per video, stream or webcam
    frame_stride: int = 1           # keep every Nth frame
    max_pixels: int | None = None   # refuse larger images before decoding
    recursive: bool = False         # walk sub-folders
    # (video sha256, frame index) -> whether this job wants the frame (a shard's
    # share); the others are skipped undecoded, as frame_stride's are
    wanted: Callable[[str, int], bool] | None = field(default=None, compare=False)

    def max_file_bytes(self) -> int | None:
        """No image of max_pixels pixels takes more bytes than this (8 bytes a
        pixel: 16-bit RGBA, uncompressed, plus a header)."""
        return None if self.max_pixels is None else self.max_pixels * 8 + (1 << 20)


class Source:
    """An ordered stream of items. `warnings`: what did not read as declared
    (a video cut short), one line each, known once the stream has ended."""
    kind: str = ""
    name: str = ""
    has_videos: bool = True  # whether it may give video frames (an overlay video is written of them)
    warnings: list[str]

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


class Files(Source):
    """An image, or a folder of images and videos (in name order); a video's
    frames come one item each."""
    kind = "files"

    def __init__(self, paths: list[Path], root: Path | None, hasher: FileHasher | None, reading: Reading):
        self.paths, self.root, self.hasher, self.reading = paths, root, hasher, reading
        self.name = str(root if root is not None else paths[0])
        self.warnings = []

    def __len__(self) -> int:
        return len(self.paths)  # files: a video counts once

    @property
    def has_videos(self) -> bool:
        return any(path.suffix.lower() in VIDEO_EXTS for path in self.paths)

    def names(self) -> list[str]:
        """The inputs' names (paths relative to the folder), known before reading any."""
        return [path.relative_to(self.root).as_posix() if self.root else path.name for path in self.paths]

    def __iter__(self) -> Iterator[Item]:
        self.warnings = []
        for path, name in zip(self.paths, self.names()):
            refused = not_a_file(path)
            if refused:
                yield Item(id=name, name=name, source=str(path), content_key="", error=refused)
            elif path.suffix.lower() in VIDEO_EXTS:
                yield from self._video(path, name)
            else:
                yield self._image(path, name)

    def _image(self, path: Path, name: str) -> Item:
        try:
            refused = too_many_bytes(str(path), path.stat().st_size, self.reading)
            if refused:
                return Item(id=name, name=name, source=str(path), content_key="", error=refused)
            data = path.read_bytes()
        except OSError as err:  # permissions, a broken link, a link loop
            return Item(id=name, name=name, source=str(path), content_key="",
                        error=f"cannot read {path}: {err.strerror}; fix or remove it and re-run")
        return image_item(name, str(path), data, self.reading)

    def _video(self, path: Path, name: str) -> Iterator[Item]:
        try:
            video = VideoFrames(path, self.hasher, self.reading, name)
        except RunnerError as err:  # one bad video in a folder: a failed item, the rest goes on
            yield Item(id=name, name=name, source=str(path), content_key="", error=str(err))
            return
        yield from video
        self.warnings += video.warnings


def too_many_bytes(source: str, size: int, reading: Reading) -> str | None:
    """Why an image file of `size` bytes is not read (max_pixels), if it is not."""
    most = reading.max_file_bytes()
    if most is None or size <= most:
        return None
    return (f"image {source} is {size:,} bytes, more than any image of max_pixels={reading.max_pixels:,} "
            "pixels takes: not read; shrink it, or raise max_pixels if it is real")


def image_item(name: str, source: str, data: bytes, reading: Reading) -> Item:
    """The item of an image file's bytes, keyed by their content (wherever they were read)."""
    limit = reading.max_pixels
    key = sha256_bytes(data)
    pixels = declared_pixels(data) if limit else None
    if pixels is not None and pixels > limit:
        return Item(id=name, name=name, source=source, content_key=key,
                    error=f"image {source} declares {pixels:,} pixels, over max_pixels={limit:,}: "
                          "not decoded; shrink it, or raise max_pixels if it is real")
    return Item(id=name, name=name, source=source, content_key=key, data=data)


def not_a_file(path: Path) -> str | None:
    """Why `path` is not read (a FIFO, device or socket named x.jpg would block
    a read forever, or never end), if it is not a regular file."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None  # unreadable: reading it says why
    if stat.S_ISREG(mode):
        return None
    kind = ("a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else
            "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
            else "not a regular file")
    return f"{path} is {kind}, not a file: not read; remove it from the input folder"


class VideoFrames(Source):
    kind = "video"

    def __init__(self, path: Path, hasher: FileHasher | None, reading: Reading, name: str | None = None,
                 source: str | None = None, video_key: str | None = None):
        """`source`: where the file came from, when `path` is a local copy of
        it (an object in a bucket), whose sha256 is then `video_key`."""
        self.path, self.reading = path, reading
        self.name, self.item_name = source or str(path), name or path.name
        self.warnings = []
        refused = not_a_file(path)
        if refused:
            raise RunnerError(refused)
        try:
            self.video_key = video_key or hasher.sha256(path)
        except OSError as err:
            raise RunnerError(f"cannot read video {path}: {err.strerror}; fix or remove it and re-run") from None
        cap = cv2.VideoCapture(str(path))
        if not cap.isOpened():
            raise RunnerError(f"cannot open video {self.name}: the file is corrupt or its codec is "
                              "not supported by OpenCV; convert it (e.g. to H.264 .mp4) and re-run")
        self.video_fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        self.frame_count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        cap.release()

    def __len__(self) -> int:
        n = -(-self.frame_count // self.reading.frame_stride)
        return min(n, self.reading.max_frames) if self.reading.max_frames else n

    def __iter__(self) -> Iterator[Item]:
        self.warnings = []
        cap = cv2.VideoCapture(str(self.path))
        wanted = self.reading.wanted
        frames = read_frames(cap, self.reading, None if wanted is None else lambda i: wanted(self.video_key, i))
        for index, frame in frames:
            key = sha256_bytes(f"{self.video_key}:frame:{index}".encode())
            yield Item(id=f"{self.item_name}#{index:06d}", name=self.item_name, source=self.name,
                       content_key=key, frame_index=index, video_fps=self.video_fps,
                       frame_stride=self.reading.frame_stride, video_key=self.video_key, _image=frame)
        if not frames.read and self.reading.max_frames != 0:
            yield Item(id=self.item_name, name=self.item_name, source=self.name, content_key="",
                       error=f"video {self.name} decoded no frames (of {self.frame_count} it declares): its frames are "
                             "corrupt or their codec is not supported by OpenCV; convert it (e.g. to H.264 .mp4)")
        elif frames.ended and frames.read < self.frame_count:
            self.warnings.append(f"video {self.item_name}: decoded {frames.read} of {self.frame_count} declared "
                                 "frames (the file is cut short or damaged); the frames after them are missing")

    def describe(self) -> dict:
        fps = kept_fps(self.video_fps, self.reading.frame_stride)
        return {**super().describe(), "sha256": self.video_key, "fps": fps}


class read_frames:
    """(index, frame) of every frame_stride-th frame of an opened
    cv2.VideoCapture (and of those `wanted(index)` keeps), until it ends or
    max_frames are kept; releases it. Frames not kept are skipped undecoded.
    Afterwards: `read`, how many frames the video gave (kept or not), and
    `ended`, whether it gave out before max_frames stopped the reading."""

    def __init__(self, cap, reading: Reading, wanted: Callable[[int], bool] | None = None):
        self.cap, self.reading, self.wanted = cap, reading, wanted
        self.read, self.ended = 0, False

    def __iter__(self) -> Iterator[tuple[int, np.ndarray]]:
        kept, cap, reading = 0, self.cap, self.reading
        try:
            for index in itertools.count():
                if reading.max_frames is not None and kept >= reading.max_frames:
                    return
                if index % reading.frame_stride or (self.wanted is not None and not self.wanted(index)):
                    if not cap.grab():  # skipped frames are not decoded
                        break
                    self.read += 1
                    if index % reading.frame_stride == 0:
                        kept += 1  # another job's frame: counted against max_frames all the same
                    continue
                ok, frame = cap.read()
                if not ok:
                    break
                self.read += 1
                kept += 1
                yield index, frame
            self.ended = True
        finally:
            cap.release()


class BucketFiles(Source):
    """An object in a bucket, or every image and video under a prefix (as a
    folder: recursive=true walks the deeper "folders"), in name order. Images
    are read concurrently, a few ahead (bounded memory); a video is streamed to
    a temporary file OpenCV can open, removed once its frames are read. Items
    are keyed by content, so a local copy and the bucket share cache entries."""
    kind = "files"

    def __init__(self, url: str, found: list, root: str | None, reading: Reading):
        from runner import objects
        self.location = objects.Location.of(url)
        self.bucket = objects.Bucket(self.location.bucket)
        self.found, self.root, self.reading = found, root, reading
        self.name = url
        self.warnings = []

    def __len__(self) -> int:
        return len(self.found)

    def names(self) -> list[str]:
        return [o.key[len(self.root):] if self.root is not None else o.key.rsplit("/", 1)[-1] for o in self.found]

    def url(self, key: str) -> str:
        return f"s3://{self.bucket.name}/{key}"

    def __iter__(self) -> Iterator[Item]:
        from runner.objects import ordered_ahead
        self.warnings = []
        entries = list(zip(self.found, self.names()))
        for (found, name), item in zip(entries, ordered_ahead(self._image, entries)):
            yield from self._video(found, name) if item is None else [item]

    def _image(self, entry) -> Item | None:
        """The image item of (object, name); None for a video (streamed when its turn comes)."""
        found, name = entry
        if Path(name).suffix.lower() in VIDEO_EXTS:
            return None
        source = self.url(found.key)
        refused = too_many_bytes(source, found.size, self.reading)
        if refused:
            return Item(id=name, name=name, source=source, content_key="", error=refused)
        got = self.bucket.get(found.key)
        if got is None:
            return Item(id=name, name=name, source=source, content_key="",
                        error=f"{source} was removed from the bucket while the run read it; re-run")
        return image_item(name, source, got[0], self.reading)

    def _video(self, found, name: str) -> Iterator[Item]:
        import tempfile
        source = self.url(found.key)
        with tempfile.NamedTemporaryFile(prefix="pose-runner-", suffix=Path(name).suffix, delete=False) as copy:
            local = Path(copy.name)
        try:
            with open(local, "wb") as out:
                sha = self.bucket.download(found.key, out)
            try:
                video = VideoFrames(local, None, self.reading, name, source=source, video_key=sha)
            except RunnerError as err:
                yield Item(id=name, name=name, source=source, content_key="", error=str(err))
                return
            yield from video
            self.warnings += video.warnings
        finally:
            local.unlink(missing_ok=True)


def open_bucket(url: str, reading: Reading) -> BucketFiles:
    """An s3:// input: one object, or the images and videos under a prefix."""
    from runner.objects import Location, Bucket
    location = Location.of(url)
    bucket = Bucket(location.bucket)
    bucket.check(location.prefix)
    exts = IMAGE_EXTS | VIDEO_EXTS
    one = bucket.exists(location.prefix) if location.prefix and not url.endswith("/") else None
    if one is not None:
        if Path(one.key).suffix.lower() not in exts:
            raise RunnerError(f"input {url} is neither an image ({', '.join(sorted(IMAGE_EXTS))}) "
                              f"nor a video ({', '.join(sorted(VIDEO_EXTS))})")
        return BucketFiles(url, [one], None, reading)
    root = location.prefix + "/" if location.prefix else ""
    found = sorted((o for o in bucket.list(root, recursive=reading.recursive)
                    if Path(o.key).suffix.lower() in exts), key=lambda o: o.key)
    if not found:
        raise RunnerError(f"{url} has no images or videos"
                          f"{'' if reading.recursive else ' directly under it (recursive=true looks deeper)'}: "
                          "pass input=s3://BUCKET/PREFIX/ holding them, or one object")
    return BucketFiles(url, found, root, reading)


STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class LiveFrames(Source):
    """A webcam or a stream URL: frames as they come, each keyed by the hash of
    its pixels (the same scene read again is not the same frames)."""
    kind = "live"

    def __init__(self, target: int | str, reading: Reading):
        self.target, self.reading = target, reading
        if isinstance(target, int):
            self.name, self.item_name = f"webcam:{target}", f"webcam{target}"
        else:
            self.name = target
            self.item_name = re.sub(r"[^A-Za-z0-9._-]+", "_", target.split("://", 1)[1]).strip("_") or "stream"
        self.warnings = []

    def __iter__(self) -> Iterator[Item]:
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # our error says it in one line
        try:
            cap = cv2.VideoCapture(self.target)
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not cap.isOpened():
            if isinstance(self.target, int):
                raise RunnerError(f"cannot open webcam {self.target}: no camera at that index; "
                                  "check the device (ls /dev/video*) or pass input=webcam:N")
            raise RunnerError(f"cannot open stream {self.target}: OpenCV could not connect or decode it; "
                              "check the URL (and that the stream is live) and re-run")
        video_fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
        for index, frame in read_frames(cap, self.reading):
            yield Item(id=f"{self.item_name}#{index:06d}", name=self.item_name, source=self.name,
                       content_key=sha256_bytes(frame.tobytes()), frame_index=index, video_fps=video_fps,
                       frame_stride=self.reading.frame_stride, _image=frame)


def list_folder(folder: Path, recursive: bool) -> list[Path]:
    """Every entry named like an image or a video, in name order. One that
    cannot be read (a broken or looping link, no permission) is kept, to become
    a failed item: listed, not skipped."""
    exts = IMAGE_EXTS | VIDEO_EXTS
    if not recursive:
        return sorted(p for p in folder.iterdir() if p.suffix.lower() in exts)
    found = []
    for parent, dirs, names in os.walk(folder):  # links to folders are not followed (no loops)
        found += [Path(parent) / n for n in names if Path(n).suffix.lower() in exts]
    return sorted(found, key=lambda p: p.relative_to(folder).as_posix())


def open_source(spec: str, hasher: FileHasher | None, reading: Reading = Reading()) -> Source:
    """An image, a video, a folder of both, `webcam` / `webcam:N`, a stream
    URL, or an object or prefix in a bucket (s3://)."""
    spec = str(spec)
    if spec == "webcam" or spec.startswith("webcam:"):
        index = spec.partition(":")[2] or "0"
        if not index.isdigit():
            raise RunnerError(f"input={spec}: the webcam index must be a number, e.g. input=webcam:0")
        return LiveFrames(int(index), reading)
    if spec.lower().startswith(STREAM_SCHEMES):
        return LiveFrames(spec, reading)
    if spec.startswith("s3://"):
        return open_bucket(spec, reading)
    path = Path(spec).expanduser()
    hint = "pass input=PATH to an image, a video, a folder of them, webcam[:N] or a stream URL"
    if not path.exists():
        raise RunnerError(f"input {spec} does not exist: {hint}")
    if path.is_dir():
        entries = list_folder(path, reading.recursive)
        if not entries:
            raise RunnerError(f"folder {spec} has no images or videos"
                              f"{'' if reading.recursive else ' (recursive=true looks in sub-folders)'}: {hint}")
        return Files(entries, path, hasher, reading)
    suffix = path.suffix.lower()
    if suffix in VIDEO_EXTS:
        return VideoFrames(path, hasher, reading)
    if suffix in IMAGE_EXTS:
        return Files([path], None, hasher, reading)
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
