"""What the console shows: our tables and one-line messages, not the
libraries' chatter."""
from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

# Deprecation notices from inside MMPose / MMDetection / mmengine / torch that
# a user cannot act on (pkg_resources, torch.cuda.amp, meshgrid indexing, and
# MMPose finding its own dataset files by a fallback path).
LIBRARY_NOISE = (
    r"pkg_resources is deprecated",
    r"`torch\.cuda\.amp\.autocast\(args\.\.\.\)` is deprecated",
    r"torch\.meshgrid: in an upcoming release",
    r"The metainfo config file .* does not exist",
    r"Conversion of an array with ndim > 0 to a scalar is deprecated",
)


def silence_library_noise() -> None:
    for pattern in LIBRARY_NOISE:
        warnings.filterwarnings("ignore", message=pattern)
    # matplotlib announces its font cache at INFO, which Hydra's console shows
    logging.getLogger("matplotlib").setLevel(logging.WARNING)
    # the AWS SDK says at INFO where it found credentials and the endpoint, on every run
    for name in ("botocore", "boto3", "urllib3"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # NNCF imports torch.utils.cpp_extension, which warns that a CPU-only machine has no CUDA
    logging.getLogger("torch.utils.cpp_extension").setLevel(logging.ERROR)


class _NoBar:
    def update(self, n=1) -> None:
        pass

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


def progress(**options):
    """A tqdm progress bar on stderr when it is a terminal, else one that draws
    nothing: tqdm's own disable=None, without importing tqdm (50 ms of a
    one-image run) where nothing would be drawn."""
    import sys
    if not (hasattr(sys.stderr, "isatty") and sys.stderr.isatty()):
        return _NoBar()
    from tqdm import tqdm
    return tqdm(**options, disable=None)


@contextlib.contextmanager
def quiet_stderr():
    """Keep what native libraries print straight to the process's stderr
    (FFmpeg's and OpenCV's complaints about a codec) off the console, while
    a probe whose result we say in our own words runs."""
    import sys
    sys.stderr.flush()
    kept = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        os.dup2(kept, 2)
        os.close(kept)


def keep_library_files_in(cache_dir: Path) -> None:
    """Point the caches the libraries keep in the home folder (ONNX Runtime's
    device id and telemetry store, matplotlib's font list, YAPF's grammar,
    imported by mmengine) into cache_dir/libraries: a run writes nothing
    outside its run folder and cache.dir (a scratch folder when cache.dir is
    read-only). For this process and its workers."""
    from runner import atomic
    folder = cache_dir / "libraries"
    if not atomic.writable(folder):
        folder = Path(tempfile.mkdtemp(prefix="pose-runner-libraries-"))
        atexit.register(shutil.rmtree, folder, True)
    os.environ["XDG_CACHE_HOME"] = str(folder)
    os.environ["MPLCONFIGDIR"] = str(folder / "matplotlib")


def table(header: list[str], rows: list[list]) -> str:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) if _numeric(c) else c.ljust(w) for c, w in zip(row, widths)).rstrip()
             for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _numeric(cell: str) -> bool:
    try:
        float(cell)
        return True
    except ValueError:
        return False


def stage_table(result) -> str:
    rows = [[name, s["units"], s["cache_hits"], s["computed"], f"{s['seconds']:.2f}"]
            for name, s in result.stages.items()]
    text = table(["stage", "units", "cached", "computed", "seconds"], rows)
    for line in result.manifest.get("warnings") or []:
        text += f"\nwarning: {line}"
    empty = result.manifest.get("empty") or []
    if empty:
        shown = ", ".join(empty[:5]) + (", ..." if len(empty) > 5 else "")
        text += f"\n{len(empty)} item(s) with no detections (zero instances): {shown}"
    if result.failed:
        text += f"\n{len(result.failed)} item(s) failed:\n" + "\n".join(
            f"  {f['id']}: {f['error']}" for f in result.failed)
    metrics = result.manifest.get("metrics")
    if metrics:
        text += "\n" + metrics_line(metrics)
    if result.out_dir is not None:
        text += f"\noutputs: {result.out_dir}"
    return text


def metrics_line(metrics: dict) -> str:
    """`AP 0.712  AP .5 0.901 ... on 4 of 4 images (test_coco.json)`."""
    values = metrics["values"]
    if not values:
        return f"evaluate: {metrics.get('note', 'nothing scored')}"
    wanted = [metrics["main"], *(k for k in values if k.endswith(" AP")), "AP .5", "AP .75", "AR", "AUC", "EPE"]
    shown = [k for k in dict.fromkeys(wanted) if k in values]
    images = metrics["images"]
    partial = "" if images["matched"] == images["inputs"] else \
        f" ({images['inputs'] - images['matched']} input(s) not in the ground truth)"
    return ("evaluate: " + "  ".join(f"{k} {values[k]:.4g}" for k in shown) +
            f"  on {images['matched']} of {images['inputs']} images{partial}; all in metrics.json")


def plan_table(stages: dict[str, dict]) -> str:
    """Dry run: per stage, what is cached, what would be computed and why."""
    rows = []
    for name, s in stages.items():
        todo = sum(s.get("would_compute", {}).values())
        why = ", ".join(f"{n} {reason}" for reason, n in sorted(s.get("would_compute", {}).items()))
        if s.get("blocked"):
            why = ", ".join(filter(None, [why, f"{s['blocked']} item(s) wait for an earlier stage"]))
        rows.append([name, s["units"], s["cache_hits"], todo, why or "-"])
    return "dry run: no model was run\n" + table(["stage", "units", "cached", "to compute", "why"], rows)
