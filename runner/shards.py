"""One input fanned out over several jobs: shard.count=N shard.index=i.

Each item goes to shard int(key[:16], 16) % N, where the key is what the item
is (an image's content hash, a frame's video hash + index): adding files to
a folder never moves an item to another shard, so a re-run of the sharded
sweep computes only the new ones. With detect.every=N a video's frames go
in blocks of N (a detection and the frames that follow it), so a box made from
the previous frame always has that frame in the same shard. An item that could
not be read goes by its name, so exactly one shard reports it."""
from __future__ import annotations

from runner.hashing import sha256_bytes
from runner.tracking import detection_block


def shard_key(item, every: int = 1, frame_stride: int = 1) -> str:
    if not item.content_key:
        return sha256_bytes(item.name.encode())
    if item.frame_index is not None and every > 1 and item.video_key:
        block = detection_block(item.frame_index, frame_stride, every)
        return sha256_bytes(f"{item.video_key}:block:{block}".encode())
    return item.content_key


def shard_of(item, count: int, every: int = 1, frame_stride: int = 1) -> int:
    return int(shard_key(item, every, frame_stride)[:16], 16) % count


def in_shard(cfg, item) -> bool:
    count = int(cfg.shard.count)
    return count <= 1 or shard_of(item, count, int(cfg.detect.every), int(cfg.frame_stride)) == int(cfg.shard.index)
