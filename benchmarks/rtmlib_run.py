"""The peer's side of benchmarks/peers.py: rtmlib run as its users run it,
on the same ONNX files, images or video and thread count as the runner, with
every result written to disk as the runner writes its own: keypoints as JSON
(one file per image, one per video) and an overlay (rtmlib's draw_bbox and
draw_skeleton; JPEG per image, an mp4 per video).

    python benchmarks/rtmlib_run.py folder DIR OUT --det FILE --pose FILE [--backend onnxruntime|openvino]
    python benchmarks/rtmlib_run.py video FILE OUT --det FILE --pose FILE --det-every 5

rtmlib is imported from .cache/bench-libs (make bench installs it there,
pinned, outside the project's environment: it is not a dependency). Its
sessions are given the thread count and, for OpenVINO, the precision asked
for (rtmlib's own OpenVINO default is the CPU's fastest, bf16 where it has it:
--precision f32 compares like with like)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / ".cache" / "bench-libs"))


def pin_sessions(threads: int, precision: str) -> None:
    """rtmlib makes its sessions with the runtimes' defaults: give them our thread count (and precision)."""
    import onnxruntime as ort
    made = ort.InferenceSession

    def session(path_or_bytes, sess_options=None, providers=None, **kwargs):
        options = sess_options or ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        return made(path_or_bytes, options, providers=providers, **kwargs)
    ort.InferenceSession = session
    try:
        import openvino
    except ImportError:
        return
    compile_model = openvino.Core.compile_model

    def compiled(self, model, device_name=None, config=None):
        config = {**(config or {}), "INFERENCE_NUM_THREADS": threads, "NUM_STREAMS": 1,
                  "INFERENCE_PRECISION_HINT": precision}
        return compile_model(self, model, device_name, config)
    openvino.Core.compile_model = compiled


def record(keypoints, scores) -> list[dict]:
    return [{"keypoints": k.tolist(), "keypoint_scores": s.tolist()} for k, s in zip(keypoints, scores)]


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["folder", "video"])
    parser.add_argument("source", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--det", required=True)
    parser.add_argument("--det-size", type=int, nargs=2, default=(320, 320))
    parser.add_argument("--pose", required=True)
    parser.add_argument("--pose-size", type=int, nargs=2, default=(192, 256))
    parser.add_argument("--backend", default="onnxruntime")
    parser.add_argument("--precision", default="f32")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--det-every", type=int, default=5)
    args = parser.parse_args(argv)
    pin_sessions(args.threads, args.precision)
    import cv2
    from rtmlib import RTMDet, RTMPose, draw_bbox, draw_skeleton
    args.out.mkdir(parents=True, exist_ok=True)
    if args.kind == "folder":
        det = RTMDet(args.det, model_input_size=tuple(args.det_size), backend=args.backend)
        pose = RTMPose(args.pose, model_input_size=tuple(args.pose_size), backend=args.backend)
        for path in sorted(args.source.iterdir()):
            image = cv2.imread(str(path))
            if image is None:
                continue
            boxes = det(image)
            keypoints, scores = pose(image, bboxes=boxes) if len(boxes) else ([], [])
            (args.out / f"{path.name}.json").write_text(json.dumps(record(keypoints, scores)))
            drawn = draw_skeleton(draw_bbox(image.copy(), boxes), keypoints, scores, kpt_thr=0.3)
            cv2.imwrite(str(args.out / f"{path.stem}.jpg"), drawn)
        return
    from functools import partial
    from rtmlib import Custom, PoseTracker
    solution = partial(Custom, det_class="RTMDet", det=args.det, det_input_size=tuple(args.det_size),
                       pose_class="RTMPose", pose=args.pose, pose_input_size=tuple(args.pose_size))
    tracker = PoseTracker(solution, det_frequency=args.det_every, backend=args.backend)
    capture, frames, writer = cv2.VideoCapture(str(args.source)), [], None
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        keypoints, scores = tracker(frame)
        frames.append({"frame_id": len(frames), "instances": record(keypoints, scores)})
        if writer is None:
            writer = cv2.VideoWriter(str(args.out / args.source.name), cv2.VideoWriter_fourcc(*"mp4v"),
                                     capture.get(cv2.CAP_PROP_FPS) or 25, frame.shape[1::-1])
        writer.write(draw_skeleton(frame.copy(), keypoints, scores, kpt_thr=0.3))
    writer.release()
    (args.out / f"{args.source.name}.json").write_text(json.dumps(frames))


if __name__ == "__main__":
    main()
