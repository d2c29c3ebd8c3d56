"""Content hashes: of files (with a stat memo so large unchanged files are not
re-read), of bytes, and of JSON-able values (canonical form)."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from runner import atomic

# Below this size re-hashing is cheaper than reading a memo entry.
MEMO_MIN_BYTES = 1 << 20


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_json(value) -> str:
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return sha256_bytes(text.encode())


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class FileHasher:
    """sha256 of file contents. A file of MEMO_MIN_BYTES or more whose
    (size, mtime_ns, inode, device) match the memo is not read again."""

    def __init__(self, memo_dir: str | Path | None):
        self.memo_dir = Path(memo_dir) if memo_dir else None
        self._seen: dict[tuple, str] = {}

    def sha256(self, path: str | Path) -> str:
        real = os.path.realpath(path)
        st = os.stat(real)
        stamp = (real, st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev)
        if stamp in self._seen:
            return self._seen[stamp]
        memo = self._memo_path(real) if st.st_size >= MEMO_MIN_BYTES else None
        digest = self._read_memo(memo, stamp)
        if digest is None:
            digest = sha256_file(real)
            if memo is not None:
                atomic.write_json(memo, {"stamp": list(stamp), "sha256": digest})
        self._seen[stamp] = digest
        return digest

    def _memo_path(self, real: str) -> Path | None:
        if self.memo_dir is None:
            return None
        key = sha256_bytes(real.encode())
        return self.memo_dir / key[:2] / f"{key}.json"

    @staticmethod
    def _read_memo(memo: Path | None, stamp: tuple) -> str | None:
        if memo is None:
            return None
        try:
            entry = json.loads(memo.read_text())
        except (OSError, ValueError):
            return None
        return entry["sha256"] if entry.get("stamp") == list(stamp) else None
