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


def frame_key(video_key: str, frame_index: int, every: int = 1, frame_stride: int = 1) -> str:
    """A video frame's shard key, known before the frame is decoded."""
    if every > 1:
        block = detection_block(frame_index, frame_stride, every)
        return sha256_bytes(f"{video_key}:block:{block}".encode())
    return sha256_bytes(f"{video_key}:frame:{frame_index}".encode())  # the frame's content key


def shard_key(item, every: int = 1, frame_stride: int = 1) -> str:
    if not item.content_key:
        return sha256_bytes(item.name.encode())
    if item.frame_index is not None and item.video_key:
        return frame_key(item.video_key, item.frame_index, every, frame_stride)
    return item.content_key


def _shard(key: str, count: int) -> int:
    return int(key[:16], 16) % count


def shard_of(item, count: int, every: int = 1, frame_stride: int = 1) -> int:
    return _shard(shard_key(item, every, frame_stride), count)


def in_shard(cfg, item) -> bool:
    count = int(cfg.shard.count)
    return count <= 1 or shard_of(item, count, int(cfg.detect.every), int(cfg.frame_stride)) == int(cfg.shard.index)


def frames_in_shard(cfg):
    """(video sha256, frame index) -> whether the frame is this shard's (None: not sharded),
    for the reader to skip the others' frames undecoded."""
    count, index = int(cfg.shard.count), int(cfg.shard.index)
    if count <= 1:
        return None
    every, stride = int(cfg.detect.every), int(cfg.frame_stride)
    return lambda video_key, frame_index: _shard(frame_key(video_key, frame_index, every, stride), count) == index
