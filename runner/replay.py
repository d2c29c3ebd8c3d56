"""Replay a run from its manifest:

    python -m runner.replay RUN_DIR [--out DIR] [--refresh]

The run's resolved config is run again into a new run folder, after checking
that every input and every file its stages read (checkpoints and model files
with their external data, configs, pipeline.json, keypoint sets, ground truth:
`stages.NAME.reads` in its manifest) is still what the run read: if one
changed, one line names it, before any image is read. The new predictions are
then compared with the old: identical, or a drift table (largest keypoint and
score differences per file) when they differ, e.g. on another machine or
backend. --refresh recomputes everything instead of reading the cache."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from runner.console import silence_library_noise, table
from runner.errors import RunnerError
from runner.hashing import sha256_file
from runner.objects import is_url


def load_manifest(run_dir: Path) -> dict:
    path = run_dir / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except OSError:
        raise RunnerError(f"{run_dir} has no manifest.json: pass a run folder (outputs/DATE/TIME)") from None
    except ValueError as err:
        raise RunnerError(f"{path} is not valid JSON ({err}): it cannot be replayed") from None
    if not manifest.get("config") or not manifest.get("input"):
        raise RunnerError(f"{path} records no config or input (the run stopped before it started): "
                          "nothing to replay")
    return manifest


def check_inputs(recorded: dict, cfg) -> None:
    """The input is byte for byte what the run read: every file it lists (an
    image, a video, a folder's images and videos; one it could not read is
    there still), and no new one in a folder."""
    kind, where = recorded["kind"], Path(recorded["path"])
    if kind == "live":
        raise RunnerError(f"a run on {where} (webcam or stream) cannot be replayed: its frames are gone")
    if is_url(recorded["path"]):
        return check_bucket_inputs(recorded, cfg)
    folder = where.is_dir()
    names = {item["id"]: item for item in recorded["items"]}
    for name, item in names.items():
        path = where / name if folder else where
        if not os.path.lexists(path):
            raise RunnerError(f"input {path} is gone: replay needs the same input")
        sha = item.get("sha256")
        if sha and (found := sha256_file(path)) != sha:
            raise RunnerError(f"input {path} changed since the run (sha256 {sha[:12]} -> {found[:12]})")
    if folder and int(cfg.shard.count) == 1:  # a shard's items are a share of the folder's
        from runner.inputs import open_source
        from runner.pipeline import reading
        now = set(open_source(str(where), None, reading(cfg)).names())
        if added := sorted(now - set(names)):
            raise RunnerError(f"input folder {where} has {len(added)} file(s) the run did not see "
                              f"(e.g. {added[0]}): replay needs the same input")


def check_bucket_inputs(recorded: dict, cfg) -> None:
    """check_inputs for an object or a prefix in a bucket: each object read
    again (streamed, concurrently) and hashed."""
    from runner.inputs import open_bucket
    from runner.objects import concurrently
    from runner.pipeline import reading
    source = open_bucket(recorded["path"], reading(cfg))
    listed = dict(zip(source.names(), source.found))
    items = recorded["items"]
    for item in items:
        if item["id"] not in listed:
            raise RunnerError(f"input {recorded['path'].rstrip('/')}/{item['id']} is gone: replay needs the same input")

    def now(item: dict) -> str | None:
        if not item.get("sha256"):
            return None
        with open(os.devnull, "wb") as sink:
            return source.bucket.download(listed[item["id"]].key, sink)
    for item, found in zip(items, concurrently(now, items)):
        if found is not None and found != item["sha256"]:
            raise RunnerError(f"input {source.url(listed[item['id']].key)} changed since the run "
                              f"(sha256 {item['sha256'][:12]} -> {found[:12]})")
    if source.root is not None and int(cfg.shard.count) == 1:
        if added := sorted(set(listed) - {item["id"] for item in items}):
            raise RunnerError(f"input {recorded['path']} has {len(added)} object(s) the run did not see "
                              f"(e.g. {added[0]}): replay needs the same input")


def environment(manifest: dict) -> dict:
    """The device and backend the run used (a replay never re-decides them),
    or a line saying why this machine cannot use them."""
    device, backend = manifest.get("device"), manifest.get("backend")
    if not device or not backend:
        raise RunnerError("the manifest records no device or backend (the run stopped before it started): "
                          "nothing to replay")
    if device.startswith("cuda"):
        import torch
        if not torch.cuda.is_available():
            raise RunnerError(f"the run used {device}, and this machine has no GPU torch can use: replay it on a "
                              "machine with one (its cache entries are keyed by the device)")
    return {"device": device, "backend": backend}


def drift(old_dir: Path, new_dir: Path) -> list[list]:
    """Per predictions file: identical, or the largest keypoint (px) and score differences."""
    rows = []
    for old in sorted((old_dir / "predictions").rglob("*.json")):
        relative = old.relative_to(old_dir / "predictions")
        new = new_dir / "predictions" / relative
        if not new.is_file():
            rows.append([str(relative), "missing in the replay", "-", "-"])
            continue
        if old.read_bytes() == new.read_bytes():
            rows.append([str(relative), "identical", 0, 0])
            continue
        a, b = (instances_of(json.loads(p.read_text())) for p in (old, new))
        if [len(x) for x in a] != [len(x) for x in b]:
            rows.append([str(relative), "other instances", "-", "-"])
            continue
        px = score = 0.0
        for frame_a, frame_b in zip(a, b):
            for x, y in zip(frame_a, frame_b):
                px = max(px, float(np.abs(np.subtract(x["keypoints"], y["keypoints"])).max(initial=0)))
                score = max(score, float(np.abs(np.subtract(x["keypoint_scores"], y["keypoint_scores"]))
                                         .max(initial=0)))
        rows.append([str(relative), "drift", f"{px:.3g}", f"{score:.3g}"])
    return rows


def instances_of(saved) -> list[list[dict]]:
    """[instances] per image file, [[instances] per frame] per video file."""
    if saved and isinstance(saved[0], dict) and "frame_id" in saved[0]:
        return [frame["instances"] for frame in saved]
    return [saved]


def replay(run_dir: Path, out_dir: Path, refresh: bool = False):
    from runner.pipeline import execute
    manifest = load_manifest(run_dir)
    cfg = OmegaConf.create(manifest["config"])
    cfg.output.dir, cfg.cache.refresh, cfg.dry_run = str(out_dir), bool(refresh), False
    check_inputs(manifest["input"], cfg)
    result = execute(cfg, keep_records=False, environment=environment(manifest), recorded=manifest.get("stages"))
    return result, drift(run_dir, out_dir)


def main(argv=None) -> None:
    from runner.api import default_output_dir
    parser = argparse.ArgumentParser(prog="python -m runner.replay", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path, help="a run folder (it holds manifest.json)")
    parser.add_argument("--out", type=Path, help="the new run folder (default: outputs/DATE/TIME)")
    parser.add_argument("--refresh", action="store_true", help="recompute everything, not from the cache")
    args = parser.parse_args(argv)
    silence_library_noise()
    try:
        result, rows = replay(args.run_dir, args.out or default_output_dir(), args.refresh)
    except RunnerError as err:
        sys.exit(f"error: {err}")
    except KeyboardInterrupt:
        sys.exit("interrupted")
    same = all(r[1] == "identical" for r in rows)
    print(table(["predictions", "replay", "max keypoint px", "max score"], rows))
    print(f"replay of {args.run_dir} in {result.out_dir}: "
          + ("identical predictions" if same else "predictions differ (table above)"))
    sys.exit(0 if result.manifest["status"] == "ok" else 1)


if __name__ == "__main__":
    main()
