"""COCO image ids for inputs: the one rule that matches an input to a COCO
file's images (detections, ground truth) and names it in results files."""
from __future__ import annotations

from pathlib import Path


def image_id(name: str, ids_by_file_name: dict | None = None) -> int | str:
    """The id of the input `name` (its path relative to the input folder):
    the id a COCO file's `images` give its file name (the relative path, or
    else its base name), else the number a COCO-style file name carries
    (000000000785.jpg -> 785), else the name itself."""
    for candidate in (name, Path(name).name):
        if ids_by_file_name and candidate in ids_by_file_name:
            return ids_by_file_name[candidate]
    stem = Path(name).stem
    return int(stem) if stem.isdigit() else name


def item_image_id(item, ids_by_file_name: dict | None = None) -> int | str:
    """An image's COCO id; a video frame is named by its item id ("demo.mp4#000012")."""
    return item.id if item.frame_index is not None else image_id(item.name, ids_by_file_name)
