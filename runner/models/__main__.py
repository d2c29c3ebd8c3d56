"""`python -m runner.models list` prints the registry; `fetch NAME...` puts the
checkpoints of those models in the checkpoint cache (exit 1 if one cannot be had)."""
from __future__ import annotations

import argparse
import sys

from runner.errors import RunnerError
from runner.models import registry
from runner.console import table


def list_models() -> str:
    rows = []
    order = {"body": 0, "hand": 1, "hand3d": 2, "wholebody": 3}
    for group in ("pose", "detect"):
        for e in sorted(registry.entries(group), key=lambda e: (order.get(e.task, 9), e.name)):
            # height x width, as MMPose's config names and the guide write it (256x192)
            size = "x".join(str(v) for v in reversed(e.get("input_size") or [])) or "-"
            paper = e.get("paper")
            score = (f"{paper.metric} {paper.value}" if paper and paper.value is not None
                     else "-")
            rows.append([e.task, e.name, e.get("num_keypoints", "-"), size,
                         e.get("detector", "-") if group == "pose" else "(detector)", score])
    return table(["task", "name", "keypoints", "input (hxw)", "detector", "paper"], rows)


def fetch(names: list[str], mirror: str | None) -> None:
    from runner.config import compose_config
    from runner.checkpoints.download import CheckpointResolver
    from runner.hashing import FileHasher
    from runner.schema import machine_dir

    cfg = compose_config([])
    resolver = CheckpointResolver(str(cfg.download.dir), mirror, float(cfg.download.timeout_s),
                                  FileHasher(machine_dir(cfg) / "memo"))
    for name in names:
        entry = registry.load_entry(name)
        if not entry.get("checkpoint"):
            continue
        group = "pose" if name in registry.names("pose") else "detect"
        key = f"{group}.model.{'path' if entry.get('path') else 'checkpoint'}"
        found = resolver.resolve(str(entry.checkpoint), owner=key, sha256=entry.get("sha256"),
                                 pinned_by=f"{group}.model.sha256")
        print(f"{name}: {found.path} ({found.origin}, sha256 {found.sha256[:12]})")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m runner.models", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the models, one row each")
    get = sub.add_parser("fetch", help="download checkpoints into the cache")
    get.add_argument("names", nargs="+")
    get.add_argument("--mirror", help="folder with checkpoints under their official names")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            print(list_models())
        else:
            fetch(args.names, args.mirror)
    except RunnerError as err:
        sys.exit(f"error: {err}")


if __name__ == "__main__":
    main()
