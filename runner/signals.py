"""Signals that stop a run: the run ends `interrupted` with its manifest
written and everything finished kept, wherever the run's process came from
(the CLI, or a job that a launcher started: joblib, submitit / Slurm, Ray).

- SIGTERM (kill, Slurm's scancel and time limit, Docker) stops the run as
  Ctrl-C does. submitit's jobs ignore SIGTERM on their own; a run must not.
- The preemption signal (SIGUSR2, or SUBMITIT_PREEMPT_SIGNAL) is submitit's
  to act on (it checkpoints and requeues the job); it is chained, after the
  run notes it, so the job's manifest says `interrupted` whatever submitit
  raises next. Without a handler of someone else's it stops the run too.

Handlers can only be installed from a process's main thread (a launcher that
runs jobs in other threads keeps its own handling)."""
from __future__ import annotations

import os
import signal
import threading

received: str | None = None  # the signal that stopped this process's run, if one did


def _stop(signum, frame) -> None:
    global received
    received = signal.Signals(signum).name
    raise KeyboardInterrupt


def _chain(previous):
    def note_then_chain(signum, frame) -> None:
        global received
        received = signal.Signals(signum).name
        previous(signum, frame)
    note_then_chain.chained = previous
    return note_then_chain


def install() -> None:
    """SIGTERM and the preemption signal end a run `interrupted` (see the module)."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.signal(signal.SIGTERM, _stop)
    preempt = getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2").upper().removeprefix("SIG"),
                      signal.SIGUSR2)
    previous = signal.getsignal(preempt)
    if getattr(previous, "chained", None) is not None or previous is _stop:
        return  # installed already
    signal.signal(preempt, _chain(previous) if callable(previous) else _stop)
