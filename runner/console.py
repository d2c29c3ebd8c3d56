"""What the console shows: our one-line messages, not the libraries' chatter."""
from __future__ import annotations

import warnings

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
