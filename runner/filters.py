"""Time-series filters for keypoint trajectories, the ones motion analysis
uses (as Sports2D offers them): One-Euro (causal, for live use), Butterworth
(zero-phase, scipy's filtfilt), a running median, and Hampel outlier
rejection; and the filling of short gaps.

Every function takes a track's series on a regular time grid: `xy` (T, K, 2)
with NaN where a keypoint is missing, and the frame rate. Filters run on each
stretch of consecutive valid samples separately, so a gap never smears."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def fill_gaps(xy: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Linearly interpolate gaps of at most `max_gap` missing samples between
    two valid ones (per keypoint and coordinate). Returns (filled xy, a (T, K)
    mask of the samples that were interpolated)."""
    out = xy.copy()
    filled = np.zeros(xy.shape[:2], bool)
    for k in range(xy.shape[1]):
        valid = ~np.isnan(xy[:, k, 0])
        index = np.flatnonzero(valid)
        for a, b in zip(index[:-1], index[1:]):
            if 1 < b - a <= max_gap + 1:
                t = np.arange(a + 1, b)
                w = ((t - a) / (b - a))[:, None]
                out[t, k] = (1 - w) * xy[a, k] + w * xy[b, k]
                filled[t, k] = True
    return out, filled


def runs(valid: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) of each stretch of consecutive True values."""
    edges = np.diff(np.concatenate([[0], valid.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))


def per_stretch(xy: np.ndarray, smooth) -> np.ndarray:
    """Apply `smooth` ((n, 2) -> (n, 2)) to every stretch of valid samples of every keypoint."""
    out = np.full_like(xy, np.nan)
    for k in range(xy.shape[1]):
        for start, stop in runs(~np.isnan(xy[:, k, 0])):
            out[start:stop, k] = smooth(xy[start:stop, k])
    return out


def one_euro(xy: np.ndarray, fps: float, min_cutoff: float = 1.0, beta: float = 0.007,
             d_cutoff: float = 1.0) -> np.ndarray:
    """Casiez, Roussel and Vogel's One-Euro filter (CHI 2012): a low-pass whose
    cutoff rises with speed, so slow motion is smoothed and fast motion lags
    little. Causal: each output uses only the samples before it."""
    dt = 1.0 / fps

    def alpha(cutoff):
        tau = 1.0 / (2 * np.pi * cutoff)
        return 1.0 / (1.0 + tau / dt)

    def smooth(series: np.ndarray) -> np.ndarray:
        out = np.empty_like(series)
        out[0], derivative = series[0], np.zeros(series.shape[1:])
        for t in range(1, len(series)):
            a_d = alpha(d_cutoff)
            derivative = a_d * (series[t] - out[t - 1]) / dt + (1 - a_d) * derivative
            a = alpha(min_cutoff + beta * np.abs(derivative))
            out[t] = a * series[t] + (1 - a) * out[t - 1]
        return out

    return per_stretch(xy, smooth)


def butterworth(xy: np.ndarray, fps: float, cutoff_hz: float = 6.0, order: int = 4) -> np.ndarray:
    """Zero-phase low-pass Butterworth (filtfilt: forward and backward, so no
    lag), as biomechanics uses it. Stretches too short to pad are left as they are."""
    from scipy.signal import butter, filtfilt
    if cutoff_hz >= fps / 2:
        return xy.copy()
    b, a = butter(order, cutoff_hz / (fps / 2))
    pad = 3 * max(len(a), len(b))

    def smooth(series):
        return filtfilt(b, a, series, axis=0, padlen=pad) if len(series) > pad else series

    return per_stretch(xy, smooth)


def median(xy: np.ndarray, window: int = 5) -> np.ndarray:
    """A centred running median over `window` samples (odd)."""
    from scipy.ndimage import median_filter
    return per_stretch(xy, lambda s: median_filter(s, size=(window | 1, 1), mode="nearest"))


def hampel(xy: np.ndarray, window: int = 7, n_sigmas: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """Hampel outlier rejection: a sample further than n_sigmas robust standard
    deviations (1.4826 x MAD) from its window's median is replaced by that
    median. Returns (cleaned xy, (T, K) mask of the replaced samples)."""
    from scipy.ndimage import median_filter
    size = (window | 1, 1)
    out, replaced = xy.copy(), np.zeros(xy.shape[:2], bool)
    for k in range(xy.shape[1]):
        for start, stop in runs(~np.isnan(xy[:, k, 0])):
            series = xy[start:stop, k]
            centre = median_filter(series, size=size, mode="nearest")
            mad = median_filter(np.abs(series - centre), size=size, mode="nearest")
            outlier = (np.abs(series - centre) > n_sigmas * 1.4826 * mad).any(axis=1)
            out[start:stop, k][outlier] = centre[outlier]
            replaced[start:stop, k] = outlier
    return out, replaced


METHODS = ("one_euro", "butterworth", "median", "none")


@dataclass
class Smoothed:
    """A track's smoothing: `xy` (T, K, 2), the filter's output where `smoothed`
    (T, K) is True and the sample itself elsewhere; `filled` (T, K), the samples
    interpolated into short gaps; `why_not`, why samples were left unsmoothed."""
    xy: np.ndarray
    filled: np.ndarray
    smoothed: np.ndarray
    why_not: str | None = None


def needs(cfg, fps: float) -> tuple[int | None, str | None]:
    """(the fewest frames in a row the filter can smooth, why shorter runs are
    not smoothed); (None, why) when it can smooth none at all."""
    method = str(cfg.method)
    if method == "one_euro":
        return 2, "One-Euro needs 2 frames in a row"
    if method == "butterworth":
        if float(cfg.cutoff_hz) >= fps / 2:
            return None, (f"butterworth cutoff_hz={float(cfg.cutoff_hz):g} is at or above the Nyquist frequency "
                          f"({fps / 2:g} Hz) of the kept frames ({fps:g} fps): lower smooth.cutoff_hz or frame_stride")
        pad = 3 * (int(cfg.order) + 1)  # filtfilt's padding for butter(order)
        return pad + 1, f"butterworth of order {int(cfg.order)} needs more than {pad} frames in a row"
    if method == "median":
        window = int(cfg.window) | 1
        if window <= 1:
            return None, "smooth.window=1: a median of one frame smooths nothing"
        return window, f"a median over smooth.window={window} frames needs {window} frames in a row"
    return None, None  # method none: nothing to say


def smooth_track(xy: np.ndarray, fps: float, cfg) -> Smoothed:
    """The smoothing the config asks for (smooth.*): fill short gaps, reject
    outliers (smooth.hampel), then filter each run of valid samples the
    filter can take (needs()); the others keep their own values."""
    xy, filled = fill_gaps(xy, int(cfg.max_gap))
    if cfg.hampel:
        xy, _ = hampel(xy, int(cfg.window), float(cfg.hampel_sigmas))
    method = str(cfg.method)
    if method == "one_euro":
        out = one_euro(xy, fps, float(cfg.min_cutoff), float(cfg.beta))
    elif method == "butterworth":
        out = butterworth(xy, fps, float(cfg.cutoff_hz), int(cfg.order))
    elif method == "median":
        out = median(xy, int(cfg.window))
    else:
        out = xy.copy()
    least, why = needs(cfg, fps)
    smoothed = np.zeros(xy.shape[:2], bool)
    for k in range(xy.shape[1]):
        for start, stop in runs(~np.isnan(xy[:, k, 0])):
            smoothed[start:stop, k] = least is not None and stop - start >= least
    out[~smoothed] = xy[~smoothed]
    valid = ~np.isnan(xy[..., 0])
    return Smoothed(out, filled, smoothed, why if (valid & ~smoothed).any() else None)


def longest_run(valid: np.ndarray) -> int:
    """The longest run of True along the first axis, over the keypoints of (T, K)."""
    return max((stop - start for k in range(valid.shape[1]) for start, stop in runs(valid[:, k])), default=0)
