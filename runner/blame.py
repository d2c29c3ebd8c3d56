"""Whose fault an error in a computation is, decided in one place.

An input is to blame only for what its own pre-processing cannot take
(decoding, resizing, cropping its pixels: a 5000x1 image): estimators run
each unit's pre-processing through `each_input`, which reports the units
that failed as InputsFailed, and the cache engine fails those items and
computes the rest. Anything else raised while computing (the network, out of
memory, a CUDA error, a bug) is not the input's: it stops the run as
`error`, whether the batch holds one unit or a thousand."""
from __future__ import annotations

from typing import Callable, Iterable

from runner.errors import RunnerError


class InputsFailed(Exception):
    """Some units' own inputs could not be pre-processed: `failures`, by the
    unit's index in the batch, holds why."""

    def __init__(self, failures: dict[int, Exception]):
        super().__init__(f"{len(failures)} input(s) could not be pre-processed")
        self.failures = failures


def each_input(prepare: Callable, inputs: Iterable, start: int = 0) -> list:
    """[prepare(x) for x in inputs]; when some fail, InputsFailed names them all
    (indices from `start`). Out of memory and our own RunnerErrors are not an
    input's fault: they pass through."""
    done, failures = [], {}
    for at, value in enumerate(inputs, start):
        try:
            done.append(prepare(value))
        except (RunnerError, MemoryError):
            raise
        except Exception as err:
            failures[at] = err
    if failures:
        raise InputsFailed(failures)
    return done
