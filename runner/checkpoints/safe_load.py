"""Load OpenMMLab checkpoints with torch's weights_only unpickler kept on.

torch >= 2.6 unpickles with weights_only=True, which mmengine 0.10.7 does not
expect: published checkpoints carry numpy arrays and scalars in their `meta`
(dataset_meta), and the restricted unpickler refuses them (mmpose#3231). We
allow exactly those numpy globals, under the names both numpy 1 and numpy 2
pickle them with, and nothing else: weights_only is never turned off.
"""
from __future__ import annotations

import contextlib
import pickle
import re
import traceback
from pathlib import Path

import numpy as np
import torch

from runner.errors import RunnerError

_NUMPY_TYPES = (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
                np.uint32, np.uint64, np.float16, np.float32, np.float64)


def _allow_list() -> list:
    from numpy._core import multiarray

    # bytes: protocol-2 pickles (publish_model's legacy format) rebuild an empty
    # array's data buffer with builtins.bytes().
    allowed: list = [np.ndarray, np.dtype, bytes]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):  # numpy 1, numpy 2
        allowed.append((multiarray._reconstruct, f"{module}._reconstruct"))
        allowed.append((multiarray.scalar, f"{module}.scalar"))
    allowed += [type(np.dtype(t)) for t in _NUMPY_TYPES]  # numpy.dtypes.Float32DType, ...
    return allowed


SAFE_GLOBALS = _allow_list()


def install_allow_list() -> None:
    """Let every weights_only torch.load in this process (mmengine's too) accept
    the numpy objects of OpenMMLab checkpoints. Idempotent."""
    torch.serialization.add_safe_globals(SAFE_GLOBALS)


class UnsafeCheckpointError(RunnerError):
    pass


class NotACheckpointError(RunnerError):
    pass


@contextlib.contextmanager
def refused_globals_explained(path: str | Path, owner: str = "the checkpoint"):
    """Turn the unpickler's multi-paragraph refusal into one line naming the
    global, and a file that is not a whole checkpoint into one line too."""
    try:
        yield
    except pickle.UnpicklingError as err:
        found = re.search(r"GLOBAL ([\w.]+)", str(err))
        if not found:
            raise not_a_checkpoint(path, err, owner) from None
        raise UnsafeCheckpointError(
            f"checkpoint {path} needs '{found.group(1)}', which is not on the allow-list of safe "
            "globals (runner/checkpoints/safe_load.py); re-save its state_dict and meta "
            "with only tensors and numpy arrays, or add that global there if you trust the file"
        ) from None
    except RunnerError:
        raise
    except Exception as err:
        if not _raised_reading_the_file(err):
            raise
        raise not_a_checkpoint(path, err, owner) from None


def _raised_reading_the_file(err: Exception) -> bool:
    """Whether torch.load raised it (a truncated or foreign file fails in many
    ways: EOFError, IndexError, RuntimeError, ...), not the model's construction."""
    return any(name in frame.filename for frame in traceback.extract_tb(err.__traceback__)
               for name in ("torch/serialization.py", "torch/_weights_only_unpickler.py"))


def not_a_checkpoint(path, err: BaseException, owner: str) -> NotACheckpointError:
    first = (str(err).strip().splitlines() or [""])[0][:120]
    return NotACheckpointError(
        f"checkpoint {path} cannot be loaded ({type(err).__name__}: {first}): it is truncated or not a "
        f"PyTorch checkpoint; delete it and re-run to fetch it again, or point {owner} at a good file")


def load_checkpoint_file(path: str | Path, map_location: str = "cpu", owner: str = "the checkpoint") -> dict:
    install_allow_list()
    with refused_globals_explained(path, owner):
        return torch.load(path, map_location=map_location, weights_only=True)
