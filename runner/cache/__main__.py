"""Cache management.

    python -m runner.cache info                      # entries and size per stage and model, exports, checkpoints
    python -m runner.cache gc --max-size 5G          # drop least recently used entries and exports
    python -m runner.cache gc --older-than 30d       # drop entries and exports unused for 30 days
    python -m runner.cache clear [--checkpoints]      # drop every entry and export (and checkpoints)

The cache is cache.dir of the config ($POSE_RUNNER_CACHE, default
~/.cache/pose-runner), a folder or an s3:// bucket prefix; its ONNX exports
backend.dir (default <cache>/onnx, on this machine when the cache is in a
bucket); --dir picks another cache (a folder or s3://BUCKET/PREFIX).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import sys
import time
from collections import defaultdict
from pathlib import Path

from runner.cache.store import Store
from runner.errors import RunnerError
from runner.console import table
from runner.schema import local_cache_dir

_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_AGES = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_size(text: str) -> int:
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)i?B?\s*", text, re.I)
    if not found:
        raise RunnerError(f"--max-size {text!r}: give a size like 500M or 5G")
    return int(float(found.group(1)) * _UNITS[found.group(2).upper()])


def parse_age(text: str) -> float:
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text, re.I)
    if not found:
        raise RunnerError(f"--older-than {text!r}: give an age like 12h, 30d or 2w")
    return float(found.group(1)) * _AGES[found.group(2).lower()]


def human(size: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def cache_root(spec: str) -> str | Path:
    """A cache's root: an s3:// URL as it is, a folder as a Path."""
    from runner import objects
    return str(spec).rstrip("/") if objects.is_url(spec) else Path(spec).expanduser()


def default_dirs() -> tuple[str | Path, Path]:
    """(cache.dir, backend.dir) of the config."""
    from runner.config import compose_config
    cfg = compose_config([])
    return cache_root(str(cfg.cache.dir)), Path(str(cfg.backend.dir)).expanduser()


def exports(folder: Path | None) -> list[tuple[list[Path], float, int]]:
    """Each derived network as (its files, last use, bytes): an ONNX export (.onnx
    + .json), ONNX Runtime's optimized graph (.onnx + .bin + .json), an int8
    OpenVINO IR (.xml + .bin + .json), OpenVINO's compiled networks (a .ov-
    folder + its .json). A use touches the record (.json), never the network
    file (its stat memo stays valid)."""
    out = []
    made = sorted([*folder.glob("*.onnx"), *folder.glob("*.xml"), *(p for p in folder.glob("*.ov-*") if p.is_dir())]) \
        if folder and folder.is_dir() else []
    for main in made:
        files = [*main.iterdir(), main.with_name(main.name + ".json")] if main.is_dir() else \
            [main, main.with_suffix(".bin"), main.with_suffix(".json")]
        files = [p for p in files if p.exists()]
        try:
            used = max(p.stat().st_mtime for p in files)
            out.append((files, used, sum(p.stat().st_size for p in files)))
        except FileNotFoundError:
            continue
    return out


def open_store(root: str | Path):
    """The stage cache under `root`: a folder, or an s3:// bucket prefix."""
    from runner import objects
    if objects.is_url(root):
        from runner.cache.remote import ObjectStore
        return ObjectStore(f"{root}/stages")
    return Store(Path(root) / "stages")


def info(root: str | Path, onnx_dir: Path | None) -> str:
    store = open_store(root)
    groups: dict = defaultdict(lambda: [0, 0])
    entries = list(store.entries())
    for entry, meta in zip(entries, store.metadata(entries)):
        key = (meta.get("stage", entry.stage), meta.get("label", "?"))
        groups[key][0] += 1
        groups[key][1] += entry.size
    rows = [[stage, label, n, human(size)] for (stage, label), (n, size) in sorted(groups.items())]
    made = exports(onnx_dir)
    rows.append(["exported networks", "-", len(made), human(sum(size for _, _, size in made))])
    checkpoints = [] if isinstance(root, str) else [
        p for p in (root / "checkpoints").rglob("*") if p.is_file() and ".locks" not in p.parts
        and not p.name.endswith(".part")]
    rows.append(["checkpoints", "-", len(checkpoints), human(sum(p.stat().st_size for p in checkpoints))])
    total = sum(s for _, s in groups.values()) + sum(size for _, _, size in made) + \
        sum(p.stat().st_size for p in checkpoints)
    where = f"cache: {root}" + (f" (exports: {onnx_dir})" if onnx_dir else "")
    return where + "\n" + table(["stage", "model", "entries", "size"], rows) + f"\ntotal: {human(total)}"


def gc(root: str | Path, onnx_dir: Path | None, max_size: int | None, older_than: float | None) -> tuple[int, int]:
    """Remove entries and exports unused for `older_than` seconds, then the
    least recently used ones until they fit in `max_size` bytes (checkpoints
    are not counted). Returns (removed, bytes)."""
    store = open_store(root)
    units = [(entry, entry.used, entry.size) for entry in store.entries()]
    units += exports(onnx_dir)
    units.sort(key=lambda u: u[1])  # oldest first (hits and loads touch)
    now, freed = time.time(), 0
    total = sum(size for _, _, size in units)
    doomed = []
    for unit, used, size in units:
        too_old = older_than is not None and now - used > older_than
        too_big = max_size is not None and total > max_size
        if not (too_old or too_big):
            continue
        doomed.append(unit)
        freed, total = freed + size, total - size
    store.remove([u for u in doomed if not isinstance(u, list)])
    for files in (u for u in doomed if isinstance(u, list)):
        for path in files:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
    return len(doomed), freed


def clear(root: str | Path, onnx_dir: Path | None, checkpoints: bool) -> None:
    if isinstance(root, str):  # a bucket prefix: its entries (exports and checkpoints are on this machine)
        store = open_store(root)
        store.remove(list(store.entries()))
        folders = [onnx_dir] if onnx_dir else []
        folders += [local_cache_dir(None) / "checkpoints"] if checkpoints else []
    else:
        folders = [root / "stages", root / "memo", onnx_dir, *([root / "checkpoints"] if checkpoints else [])]
    for folder in folders:
        shutil.rmtree(folder, ignore_errors=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runner.cache",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", help="cache folder (default: cache.dir of the config)")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("info", help="entries and size per stage and model")
    collect = sub.add_parser("gc", help="remove old or least recently used entries")
    collect.add_argument("--max-size", help="keep the entries under this size (500M, 5G)")
    collect.add_argument("--older-than", help="remove entries unused this long (12h, 30d)")
    wipe = sub.add_parser("clear", help="remove every entry")
    wipe.add_argument("--checkpoints", action="store_true", help="also the downloaded checkpoints")
    args = parser.parse_args(argv)
    try:
        if args.dir:
            root = cache_root(args.dir)
            onnx_dir = None if isinstance(root, str) else root / "onnx"  # a bucket's: only its entries
        else:
            root, onnx_dir = default_dirs()
        if args.command == "info":
            print(info(root, onnx_dir))
        elif args.command == "gc":
            if not (args.max_size or args.older_than):
                raise RunnerError("gc needs --max-size SIZE and/or --older-than AGE")
            n, freed = gc(root, onnx_dir, args.max_size and parse_size(args.max_size),
                          args.older_than and parse_age(args.older_than))
            print(f"removed {n} entries and exports ({human(freed)})")
        else:
            clear(root, onnx_dir, args.checkpoints)
            print(f"cleared {root}" + (" (checkpoints too)" if args.checkpoints else ""))
    except RunnerError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
