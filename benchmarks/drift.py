"""Each reduced precision's drift from float32, on the same checkpoints, images
and boxes: the table BENCHMARKS.md publishes ("Precision drift").

    python -m benchmarks.drift [--out benchmarks/results]

Pose: the COCO val images of ../shared/data/coco with the boxes of its
detection results file (detect/model=from_file), so every run sees the same
boxes. Detector: its boxes on the same images and the video's frames. The
float32 reference is OpenVINO f32 (itself within float32 reordering of PyTorch,
tests/test_backends.py). Two model pairs: the tests' (RTMDet-nano + RTMPose-t,
the ones runner/backends/drift.py's bounds are held to) and the guide's
(RTMDet-m + RTMPose-m). int8 is calibrated on the COCO images.

Writes drift.{json,md}."""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
COCO = DATA / "coco"
PAIRS = {"tests' pair": ("rtmdet_nano_person", "rtmpose_t"), "guide's pair": ("rtmdet_m_person", "rtmpose_m")}
RUNS = [("openvino", "bf16"), ("pytorch", "bf16"), ("pytorch", "f16"), ("openvino", "f16"), ("openvino", "int8")]


def run(work: Path, name: str, overrides: list[str], folder: Path):
    import runner
    return runner.run(recipe="body_rtmpose", input=folder, overrides=[
        f"cache.dir={work / 'cache'}", f"backend.dir={work / 'onnx'}", f"backend.calibration={COCO}",
        *overrides], output_dir=work / "out" / name)


def measure(work: Path, ckpt: dict, detector: str, pose: str, frames: Path) -> list[dict]:
    from runner.backends.drift import box_drift, pose_drift, within
    from runner.errors import RunnerError
    models = [f"+download.checkpoints.{n}={ckpt[n]}" for n in (detector, pose)]
    pose_args = ["detect/model=from_file", f"detect.model.path={COCO / 'test_coco_det_AP_H_56.json'}",
                 f"pose/model={pose}", *models]
    det_args = [f"detect/model={detector}", f"pose/model={pose}", "recipe.steps=[download,detect]", *models]
    reference = {"pose": run(work, f"{pose}-f32", [*pose_args, "backend=openvino"], COCO).records,
                 "detect": run(work, f"{detector}-f32", [*det_args, "backend=openvino"], frames).records}
    rows = []
    for backend, precision in RUNS:
        asked = [f"backend={backend}", f"backend.precision={precision}"]
        try:
            stats = {**pose_drift(reference["pose"], run(work, f"{pose}-{backend}{precision}",
                                                         [*pose_args, *asked], COCO).records),
                     **box_drift(reference["detect"], run(work, f"{detector}-{backend}{precision}",
                                                          [*det_args, *asked], frames).records)}
        except RunnerError as err:
            rows.append({"backend": backend, "precision": precision, "refused": str(err)})
            continue
        rows.append({"backend": backend, "precision": precision, **stats, "exceeds": within(stats, precision)})
        print(backend, precision, stats, flush=True)
    return rows


def markdown(report: dict) -> str:
    lines = []
    for pair, rows in report["pairs"].items():
        detector, pose = PAIRS[pair]
        lines += [f"**{pair}**: {detector} + {pose}, {report['images']} images for boxes, "
                  f"{report['keypoints'][pair]} keypoints", "",
                  "| backend | precision | kpts within 1 px | median px | p95 px | max px | score p95 | score max "
                  "| f32 boxes found | IoU median | within bounds |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |"]
        for r in rows:
            if "refused" in r:
                lines.append(f"| {r['backend']} | {r['precision']} | refused: {r['refused']} |||||||||")
                continue
            lines.append(f"| {r['backend']} | {r['precision']} | {r['kpt_within_1px']:.1%} | {r['kpt_px_median']:.2f} "
                         f"| {r['kpt_px_p95']:.1f} | {r['kpt_px_max']:.0f} | {r['score_p95']:.2e} "
                         f"| {r['score_max']:.2e} | {r['boxes_found']:.0%} | {r['iou_median']:.3f} "
                         f"| {'yes' if not r['exceeds'] else 'no: ' + '; '.join(r['exceeds'])} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    opts = parser.parse_args(argv)
    from benchmarks.compare import checkpoints, publish
    from runner.measures import write_frames
    from runner.console import silence_library_noise
    silence_library_noise()
    work = Path(tempfile.mkdtemp(prefix="pose-runner-drift-"))
    frames = work / "frames"
    frames.mkdir()
    for path in sorted(COCO.glob("*.jpg")):
        (frames / path.name).write_bytes(path.read_bytes())
    write_frames(DATA / "video" / "demo.mp4", frames)
    report = {"images": len(list(frames.iterdir())), "pairs": {}, "keypoints": {}}
    for pair, (detector, pose) in PAIRS.items():
        ckpt = checkpoints(ROOT / ".cache" / "bench-checkpoints", (detector, pose))
        rows = measure(work, ckpt, detector, pose, frames)
        report["pairs"][pair] = rows
        report["keypoints"][pair] = next((r["keypoints"] for r in rows if "keypoints" in r), 0)
    publish(opts.out, "drift", report, markdown(report))


if __name__ == "__main__":
    main()
