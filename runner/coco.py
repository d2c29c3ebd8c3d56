"""COCO image ids for inputs: the one rule that matches an input to a COCO
file's images (ground truth, detections) and names it in results files.

An input is named by its path relative to the input folder (`cam1/0001.jpg`).
Against a file that lists `images`, it matches the image whose `file_name` is
that path; failing that, the one image whose `file_name` and the input's path
end in the same folders and file name (`val2017/0001.jpg` and `0001.jpg`).
Two images that fit equally, or two inputs that find one image, are refused:
a guess would pool one image's predictions with another's ground truth. Only
a file without `images` (a COCO results list) is matched by the number a
COCO-style file name carries (000000000785.jpg -> 785)."""
from __future__ import annotations

from pathlib import PurePosixPath

from runner.errors import RunnerError


class ImageIds:
    """The images of one COCO file, by file name."""

    def __init__(self, images: list[dict], source: str):
        self.source = source
        self.by_path: dict = {}
        for im in images:
            path = str(PurePosixPath(im["file_name"]))
            if self.by_path.setdefault(path, im["id"]) != im["id"]:  # its annotations would go to one id only
                raise RunnerError(f"{source} names {path} under two image ids ({self.by_path[path]} and {im['id']}): "
                                  "a COCO file has one id per image; remove the extra entry from its `images`")
        self.by_base: dict[str, list[str]] = {}
        for path in self.by_path:
            self.by_base.setdefault(PurePosixPath(path).name, []).append(path)

    def __len__(self) -> int:
        return len(self.by_path)

    def example(self) -> str:
        return next(iter(self.by_path), "-")

    def of(self, name: str):
        """The id of the input `name`, None when the file has no such image."""
        path = PurePosixPath(name)
        if str(path) in self.by_path:
            return self.by_path[str(path)]
        found = [p for p in self.by_base.get(path.name, []) if _same_tail(PurePosixPath(p).parts, path.parts)]
        if len(found) > 1:
            raise RunnerError(f"input {name} matches {len(found)} images of {self.source} by file name "
                              f"({', '.join(found[:3])}): pass the folder the file names are relative to "
                              "(recursive=true keeps sub-folders in the names)")
        return self.by_path[found[0]] if found else None

    def check(self, names: list[str]) -> None:
        """No two inputs may find one image (each input's own ambiguity is refused by `of`)."""
        seen: dict = {}
        for name in names:
            found = self.of(name)
            if found is not None and seen.setdefault(found, name) != name:
                raise RunnerError(f"inputs {seen[found]} and {name} both match image id {found} of {self.source}: "
                                  "pass the folder the file names are relative to (recursive=true keeps "
                                  "sub-folders in the names), or rename one of them")


def _same_tail(a: tuple, b: tuple) -> bool:
    """Whether one path is the other's trailing folders and file name."""
    n = min(len(a), len(b))
    return a[-n:] == b[-n:]


def numbered_id(name: str) -> int | str:
    """A COCO-style file name's number (000000000785.jpg -> 785), else the name."""
    stem = PurePosixPath(name).stem
    return int(stem) if stem.isdigit() else name


def item_image_id(item, ids: ImageIds | None = None):
    """An item's image id: from `ids` (None: the image is not in that file), or
    without a file, its name's number; a video frame is its item id ("demo.mp4#000012")."""
    if item.frame_index is not None:
        return None if ids is not None else item.id
    return ids.of(item.name) if ids is not None else numbered_id(item.name)
