"""Content hashes: `digest` of values (the one function every cache key and
derived-artifact name is made with), and sha256 of bytes and files (with a
stat memo so large unchanged files are not re-read)."""
from __future__ import annotations

import ast
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from runner import atomic

# Below this size re-hashing is cheaper than reading a memo entry.
MEMO_MIN_BYTES = 1 << 20


def digest(value) -> str:
    """sha256 of `value`'s canonical bytes.

    Takes None, bool, int, float, str, bytes, numeric numpy arrays and scalars,
    and lists, tuples and dicts of them (keys: str, int, float, bool or None;
    dict order does not matter).
    Anything else raises TypeError: an object array's bytes are memory addresses
    and an arbitrary object's repr may be too, so a key made from them would
    differ in the next process and never hit."""
    h = hashlib.sha256()
    _feed(h, value)
    return h.hexdigest()


def _feed(h, value) -> None:
    # Every value is written with a type tag and, where its length varies, its
    # length first: no two different values can produce the same byte stream.
    if value is None:
        h.update(b"N")
    elif isinstance(value, (bool, np.bool_)):
        h.update(b"T" if value else b"F")
    elif isinstance(value, (int, np.integer)):
        h.update(b"i%d;" % int(value))
    elif isinstance(value, (float, np.floating)):
        h.update(b"f" + float(value).hex().encode() + b";")
    elif isinstance(value, str):
        data = value.encode()
        h.update(b"s%d:" % len(data) + data)
    elif isinstance(value, (bytes, bytearray, memoryview)):
        data = bytes(value)
        h.update(b"b%d:" % len(data) + data)
    elif isinstance(value, np.ndarray):
        if value.dtype.hasobject or value.dtype.kind not in "biufc":
            raise TypeError(f"cannot make a key from a numpy array of dtype {value.dtype}: "
                            "only numeric arrays have canonical bytes")
        array = np.ascontiguousarray(value)
        header = f"a{array.dtype.str}{array.shape}:".encode()
        h.update(header + b"%d:" % array.nbytes)
        h.update(array.tobytes())
    elif isinstance(value, (list, tuple)):
        h.update(b"l%d:" % len(value))
        for item in value:
            _feed(h, item)
    elif isinstance(value, dict):
        h.update(b"d%d:" % len(value))
        for encoded, k in sorted((_scalar_bytes(k), k) for k in value):
            h.update(encoded)
            _feed(h, value[k])
    else:
        raise TypeError(f"cannot make a key from a {type(value).__name__}: convert it to "
                        "plain data (str, numbers, lists, dicts, numeric arrays) first")


class _Bytes:
    """Collects what _feed writes (for sorting dict keys by their encoding)."""

    def __init__(self):
        self.data = b""

    def update(self, data: bytes) -> None:
        self.data += data


def _scalar_bytes(key) -> bytes:
    if not isinstance(key, (str, int, float, bool, np.integer, np.floating, np.bool_, type(None))):
        raise TypeError(f"cannot make a key from a dict with a {type(key).__name__} key")
    out = _Bytes()
    _feed(out, key)
    return out.data


def source_fingerprint(path: str) -> str:
    """A Python module's identity as code: the sha256 of its syntax tree with the
    docstrings left out, so comments, layout and docs change nothing."""
    tree = ast.parse(Path(path).read_text())
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr) \
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:16]


def sha256_bytes(data: bytes | memoryview) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class FileHasher:
    """sha256 of file contents. A file of MEMO_MIN_BYTES or more whose
    (size, mtime_ns, ctime_ns, inode, device) match the memo is not read again.
    The ctime is what makes the stamp trustworthy: a user (or a copy tool) can
    set a file's mtime back after rewriting it, but every write, rename into
    place or utime call moves its ctime to now, and nothing but the kernel sets it."""

    def __init__(self, memo_dir: str | Path | None):
        self.memo_dir = Path(memo_dir) if memo_dir else None
        self._seen: dict[tuple, str] = {}

    def sha256(self, path: str | Path) -> str:
        real = os.path.realpath(path)
        st = os.stat(real)
        stamp = (real, st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)
        if stamp in self._seen:
            return self._seen[stamp]
        memo = self._memo_path(real) if st.st_size >= MEMO_MIN_BYTES else None
        found = self._read_memo(memo, stamp)
        if found is None:
            found = sha256_file(real)
            if memo is not None:
                try:
                    atomic.write_json(memo, {"stamp": list(stamp), "sha256": found})
                except OSError:  # a read-only cache: the memo only saves time
                    pass
        self._seen[stamp] = found
        return found

    def of_content(self, kind: str, sha256: str, compute):
        """A plain-data value that depends on a file's content alone (`compute()`),
        kept in the memo under its sha256: computed once per content."""
        memo = self.memo_dir / kind / sha256[:2] / f"{sha256}.json" if self.memo_dir else None
        if memo is not None:
            try:
                return json.loads(memo.read_text())["value"]
            except (OSError, ValueError, KeyError, TypeError):
                pass
        value = compute()
        if memo is not None:
            try:
                atomic.write_json(memo, {"value": value})
            except OSError:
                pass
        return value

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
