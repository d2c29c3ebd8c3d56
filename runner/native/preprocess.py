"""Image -> network input, as MMDetection's and MMPose's test pipelines and
data preprocessors make it: the same OpenCV calls, the same float32 sums.

- letterbox: MMDetection's Resize(keep_ratio=True) then Pad (bottom and right);
- topdown_crop: MMPose's GetBBoxCenterScale (padding 1.25) then TopdownAffine
  (the box grown to the input's aspect ratio, warped by the same 3-point affine);
- normalize: the data preprocessor's channel order, then (x - mean) / std.

Where MMDetection's own resize would make a side of 0 px (a 5000x1 image), the
side is kept at 1 px: the image gives a result instead of an error."""
from __future__ import annotations

import cv2
import numpy as np


def letterbox(image: np.ndarray, size: tuple[int, int], pad_val: float = 114) -> tuple[np.ndarray, tuple[float, float]]:
    """(image resized to fit `size` (w, h) keeping its aspect ratio and padded
    to it, (w scale, h scale)): mmcv.imrescale's rounding, cv2 bilinear."""
    h, w = image.shape[:2]
    factor = min(max(size) / max(h, w), min(size) / min(h, w))
    new_w, new_h = max(1, int(w * float(factor) + 0.5)), max(1, int(h * float(factor) + 0.5))
    resized = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    padded = np.full((max(size[1], new_h), max(size[0], new_w), 3), pad_val, dtype=np.uint8)
    padded[:new_h, :new_w] = resized
    return padded, (new_w / w, new_h / h)


def box_center_scale(box: np.ndarray, padding: float = 1.25) -> tuple[np.ndarray, np.ndarray]:
    """MMPose's bbox_xyxy2cs: the box's centre and its size times `padding` (float32)."""
    box = np.asarray(box, dtype=np.float32)
    return (box[2:] + box[:2]) * 0.5, (box[2:] - box[:2]) * padding


def fix_aspect_ratio(scale: np.ndarray, aspect_ratio: float) -> np.ndarray:
    """TopdownAffine._fix_aspect_ratio: grow the short side to the input's w/h."""
    w, h = scale
    return np.array([w, w / aspect_ratio] if w > h * aspect_ratio else [h * aspect_ratio, h], dtype=scale.dtype)


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    direction = a - b
    return b + np.r_[-direction[1], direction[0]]


def warp_matrix(center: np.ndarray, scale: np.ndarray, output_size: tuple[int, int]) -> np.ndarray:
    """MMPose's get_warp_matrix (no rotation, no shift): the 2x3 affine from the
    box to the crop, from three point pairs, in float32 as MMPose makes it."""
    dst_w, dst_h = output_size
    src = np.zeros((3, 2), dtype=np.float32)
    src[0, :] = center
    src[1, :] = center + np.array([scale[0] * -0.5, 0.0])
    dst = np.zeros((3, 2), dtype=np.float32)
    dst[0, :] = [dst_w * 0.5, dst_h * 0.5]
    dst[1, :] = np.array([dst_w * 0.5, dst_h * 0.5]) + np.array([dst_w * -0.5, 0.0])
    src[2, :] = _third_point(src[0, :], src[1, :])
    dst[2, :] = _third_point(dst[0, :], dst[1, :])
    return cv2.getAffineTransform(np.float32(src), np.float32(dst))


def topdown_crop(image: np.ndarray, box: np.ndarray, input_size: tuple[int, int],
                 padding: float = 1.25) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(the box's crop at `input_size` (w, h), its centre, its scale after the
    aspect fix): what inference_topdown feeds the network for that box."""
    w, h = input_size
    center, scale = box_center_scale(box, padding)
    scale = fix_aspect_ratio(scale, w / h)
    crop = cv2.warpAffine(image, warp_matrix(center, scale, (w, h)), (int(w), int(h)), flags=cv2.INTER_LINEAR)
    return crop, center, scale


def normalize(images: list[np.ndarray], mean, std, bgr_to_rgb: bool) -> np.ndarray:
    """A batch (N, 3, H, W) float32 from equal-sized HWC uint8 BGR images, as
    MMEngine's ImgDataPreprocessor makes it: channels flipped when asked,
    then (x - mean) / std in float32."""
    batch = np.stack(images)
    if bgr_to_rgb:
        batch = batch[..., ::-1]
    out = np.empty((batch.shape[0], batch.shape[3], batch.shape[1], batch.shape[2]), np.float32)
    out[...] = batch.transpose(0, 3, 1, 2)
    out -= np.asarray(mean, np.float32).reshape(1, -1, 1, 1)
    out /= np.asarray(std, np.float32).reshape(1, -1, 1, 1)
    return out
