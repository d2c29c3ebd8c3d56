"""Key completeness: a cached stage recomputes exactly when something it reads
changed. Each stage declares what it reads (runner/stages/reads.py: files by
content, params, code, libraries, backend); the TABLE below changes one
declared input at a time and asserts the stage recomputes, and changes things
a stage does not read and asserts it does not. test_every_declared_input_has_a_case
holds the table to the declarations the runs' manifests record: a new declared
input without a case here fails.

Two base runs, one image with four people, the trained person detector of
../shared/weights as an ONNX model file:
- "files": the pose model is an ONNX file too (the runner's own export of a
  locally made RTMPose-t, with its record beside it), scored against ground truth;
- "registry": the pose model is RTMPose-t from its checkpoint and MMPose config."""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import onnx
import pytest

import runner
from conftest import COCO, ROOT, exports_in

WEIGHTS = ROOT.parent / "shared" / "weights"
IMAGE = "000000196141.jpg"  # four people
STAGES = ("detect", "pose", "visualize", "evaluate")


@dataclass(frozen=True)
class Case:
    base: str                    # "files" or "registry"
    covers: tuple[str, ...]      # the declared inputs it changes, "stage: input" ("" for none)
    change: Callable             # (Setup) -> extra overrides; may edit the setup's files, or monkeypatch
    recomputes: tuple[str, ...]  # the stages that must compute again; every other stage computes nothing
    how: str = ""

    @property
    def id(self) -> str:
        return f"{self.base}: {', '.join(self.covers) or 'nothing read'}{' (' + self.how + ')' if self.how else ''}"


class Setup:
    """One run's folder: its files, its cache, its overrides; a case works on a
    copy of a base's folder, whose cache holds the base run's entries."""

    def __init__(self, base: str, root: Path, monkeypatch=None):
        self.base, self.root, self.monkeypatch = base, root, monkeypatch
        self.cache = root / "cache"
        self.detector = root / "det" / "det.onnx"
        self.pose_file = root / "pose" / "pose.onnx"
        self.ann = root / "gt" / "gt.json"

    @classmethod
    def copy_of(cls, base: str, warm: Path, root: Path, monkeypatch) -> "Setup":
        shutil.copytree(warm, root)
        return cls(base, root, monkeypatch)

    def run(self, extra: list[str], name: str):
        return runner.run(recipe="body_rtmpose", input=self.root / "images" / IMAGE, output_dir=self.root / name,
                          overrides=[*BASES[self.base](self), f"cache.dir={self.cache}", *extra])


def _files_base(s: Setup) -> list[str]:
    return ["detect/model=onnx", f"detect.model.path={s.detector}", "pose/model=onnx",
            f"pose.model.path={s.pose_file}", f"eval.ann_file={s.ann}"]


def _registry_base(s: Setup) -> list[str]:
    return ["detect/model=onnx", f"detect.model.path={s.detector}", "pose/model=rtmpose_t",
            f"pose.model.checkpoint={s.root / 'ckpt' / 'rtmpose_t.pth'}", f"eval.ann_file={s.ann}"]


def _external_base(s: Setup) -> list[str]:
    return [*_files_base(s), "pose.model.num_keypoints=17"]  # a bare SimCC file: its keypoint axis is not fixed


BASES = {"files": _files_base, "registry": _registry_base, "external": _external_base}


# -- the changes ---------------------------------------------------------------------------------
def resave(path: Path, **external) -> None:
    """The same network saved again with another doc string: other bytes, the same numbers."""
    model = onnx.load(str(path))
    model.doc_string = "saved again"
    onnx.save_model(model, str(path), **external)


def nudge_external_weight(s: Setup) -> list[str]:
    data = s.detector.with_name("det.onnx.data")
    weights = np.fromfile(data, np.float32)
    weights[len(weights) // 2] += np.float32(1e-3)
    weights.tofile(data)
    return []


def pipeline_json(folder: Path, transforms: list[dict]) -> None:
    (folder / "pipeline.json").write_text(json.dumps({"pipeline": {"tasks": [
        {"module": "Transform", "transforms": transforms}]}}))


def resave_with_record(s: Setup) -> list[str]:
    from runner.hashing import sha256_file
    resave(s.pose_file)
    record = s.pose_file.with_suffix(".json")
    record.write_text(json.dumps({**json.loads(record.read_text()), "sha256": sha256_file(s.pose_file)}))
    return []


def edit_record(s: Setup) -> list[str]:
    """The export's record (trusted: it names the file's sha256) says another normalisation."""
    path = s.pose_file.with_suffix(".json")
    record = json.loads(path.read_text())
    record["model"]["mean"] = [120.0, 116.28, 103.53]
    path.write_text(json.dumps(record))
    return []


def other_keypoint_set_file(s: Setup) -> list[str]:
    """MMPose's coco.py with other bytes (what an mmpose upgrade does to it)."""
    from runner.native import keypoints
    copy = s.root / "coco.py"
    copy.write_text(keypoints.set_file("coco").read_text() + "\n# another release\n")
    real = keypoints.set_file
    s.monkeypatch.setattr(keypoints, "set_file", lambda name: copy if name == "coco" else real(name))
    keypoints.keypoint_set.cache_clear()
    return []


def other_version(lib: str):
    def change(s: Setup) -> list[str]:
        from runner import versions
        real = versions.version
        s.monkeypatch.setattr(versions, "version", lambda name: "99.0" if name == lib else real(name))
        return []
    return change


def other_code(cls_path: str):
    def change(s: Setup) -> list[str]:
        module, name = cls_path.rsplit(".", 1)
        cls = getattr(__import__(module, fromlist=[name]), name)
        s.monkeypatch.setattr(cls, "code_version", cls.code_version + 100)
        return []
    return change


def edit_ground_truth(s: Setup) -> list[str]:
    data = json.loads(s.ann.read_text())
    annotation = next(a for a in data["annotations"] if a.get("num_keypoints"))
    annotation["keypoints"][0] += 2.0
    s.ann.write_text(json.dumps(data))
    return []


def other_checkpoint(s: Setup) -> list[str]:
    shutil.copyfile(s.root / "ckpt" / "rtmpose_t_seed1.pth", s.root / "ckpt" / "rtmpose_t.pth")
    return []


def other_config(s: Setup) -> list[str]:
    """A config of our own: RTMPose-t's with another test-time padding of the box."""
    from runner.models.configs import resolve_config_path
    from runner.models.registry import load_entry
    base = resolve_config_path(str(load_entry("rtmpose_t").config))
    config = s.root / "rtmpose-t-padding.py"
    config.write_text(f"_base_ = ['{base}']\n"
                      "test_dataloader = dict(dataset=dict(pipeline=[\n"
                      "    dict(type='LoadImage'), dict(type='GetBBoxCenterScale', padding=1.3),\n"
                      "    dict(type='TopdownAffine', input_size=(192, 256)), dict(type='PackPoseInputs')]))\n")
    return [f"pose.model.config={config}"]


def metric_only_config(s: Setup) -> list[str]:
    """RTMPose-t's config with only its metric's settings changed (the evaluator, not the model)."""
    from runner.models.configs import resolve_config_path
    from runner.models.registry import load_entry
    base = resolve_config_path(str(load_entry("rtmpose_t").config))
    config = s.root / "rtmpose-t-metric.py"
    config.write_text(f"_base_ = ['{base}']\nval_evaluator = dict(score_mode='bbox')\n")
    return [f"pose.model.config={config}"]


def edit(path_of: Callable, transforms: list[dict]):
    def change(s: Setup) -> list[str]:
        pipeline_json(path_of(s).parent, transforms)
        return []
    return change


def overrides(*given: str):
    return lambda s: list(given)


EVERY = ("detect", "pose", "visualize", "evaluate")
DOWN_FROM_POSE = ("pose", "visualize", "evaluate")

TABLE = [
    # detect: an ONNX model file
    Case("files", ("detect: model file",), lambda s: resave(s.detector) or [], ("detect",),
         "saved again: the same boxes, so nothing downstream recomputes"),
    Case("files", ("detect: pipeline.json",), edit(lambda s: s.detector, [
        {"type": "Resize", "keep_ratio": True, "scale": [288, 288]}, {"type": "Pad", "size": [288, 288]},
        {"type": "Normalize", "mean": [103.53, 116.28, 123.675], "std": [57.375, 57.12, 58.395], "to_rgb": False}]),
         EVERY, "added, 288 px"),
    Case("files", ("detect: params.description",), overrides("detect.model.input_size=[288,288]"), EVERY,
         "input_size"),
    Case("files", ("detect: params.description",), overrides("detect.model.mean=[100,116.28,123.675]"), EVERY,
         "mean"),
    Case("files", ("detect: params.description",), overrides("detect.model.std=[50,57.12,58.395]"), EVERY, "std"),
    Case("files", ("detect: params.description",), overrides("detect.model.bgr_to_rgb=true"), EVERY, "bgr_to_rgb"),
    Case("files", ("detect: params.description",), overrides("detect.model.pad_val=0"), EVERY, "pad_val"),
    Case("files", ("detect: code",), other_code("runner.native.detector.NativeDetector"), ("detect",),
         "NativeDetector's version: equal boxes, nothing downstream changes"),
    Case("files", ("detect: libs", "pose: libs"), other_version("onnxruntime"), ("detect", "pose"), "onnxruntime"),
    Case("files", ("detect: runs_on", "pose: runs_on"), overrides("backend=openvino"), EVERY, "OpenVINO"),
    # pose: the runner's export given as an ONNX model file, with its record
    Case("files", ("pose: model file",), resave_with_record, ("pose",), "saved again, its record following it: "
                                                                          "the same keypoints"),
    Case("files", ("pose: export record",), edit_record, DOWN_FROM_POSE, "another mean"),
    Case("files", ("pose: keypoint set", "visualize: keypoint set"), other_keypoint_set_file, ("pose", "visualize"),
         "MMPose's coco.py with other bytes"),
    Case("files", ("pose: params.description",), overrides("pose.model.mean=[120,116.28,103.53]"), DOWN_FROM_POSE,
         "mean"),
    Case("files", ("pose: params.description",), overrides("pose.model.std=[50,57.12,57.375]"), DOWN_FROM_POSE,
         "std"),
    Case("files", ("pose: params.description",), overrides("pose.model.bgr_to_rgb=false"), DOWN_FROM_POSE,
         "bgr_to_rgb"),
    Case("files", ("pose: params.flip_test",), overrides("pose.flip_test=false"), DOWN_FROM_POSE),
    Case("files", ("pose: input",), overrides("detect.bbox_thr=0.05"), DOWN_FROM_POSE, "more boxes"),
    Case("files", ("pose: code",), other_code("runner.native.topdown.NativeTopdown"), ("pose",), "NativeTopdown"),
    # visualize
    Case("files", ("visualize: params.kpt_thr",), overrides("visualize.kpt_thr=0.01"), ("visualize",)),
    Case("files", ("visualize: params.draw_bbox",), overrides("visualize.draw_bbox=false"), ("visualize",)),
    Case("files", ("visualize: params.radius",), overrides("visualize.radius=5"), ("visualize",)),
    Case("files", ("visualize: params.thickness",), overrides("visualize.thickness=2"), ("visualize",)),
    Case("files", ("visualize: params.format",), overrides("output.overlay_ext=png"), ("visualize",)),
    Case("files", ("visualize: params.keypoints",), overrides("pose.model.keypoints=ochuman"),
         ("pose", "visualize"), "OCHuman's 17 keypoints: another set's file"),
    Case("files", ("visualize: code",), other_code("runner.stages.visualize.Visualize"), ("visualize",)),
    Case("files", ("visualize: libs",), other_version("cv2"), ("detect", "pose", "visualize"), "cv2"),
    # evaluate
    Case("files", ("evaluate: ground truth",), edit_ground_truth, ("evaluate",), "one keypoint moved"),
    Case("files", ("evaluate: code",), other_code("runner.stages.evaluate.Evaluate"), ("evaluate",)),
    Case("files", ("evaluate: libs",), other_version("xtcocotools"), ("evaluate",), "xtcocotools"),
    # what no stage reads
    Case("files", (), overrides("export.coco_results=false"), (), "export.coco_results"),
    Case("files", (), overrides("detect.batch_size=1", "pose.batch_size=1"), (), "batch sizes"),
    Case("files", (), lambda s: [], (), "another run folder"),
    # a registry model: checkpoint + MMPose config
    Case("registry", ("pose: checkpoint",), other_checkpoint, DOWN_FROM_POSE, "another seed"),
    Case("registry", ("pose: model config",), other_config, DOWN_FROM_POSE, "the box padded 1.3x"),
    Case("registry", ("pose: model config", "evaluate: params.metric"), metric_only_config, ("pose", "evaluate"),
         "only its val_evaluator: equal keypoints, equal overlays"),
    Case("registry", ("pose: params.description", "pose: params.flip_test"), overrides("pose.flip_test=false"),
         DOWN_FROM_POSE),
    Case("registry", ("pose: libs",), other_version("torch"), ("pose",),
         "torch makes the export: exported again, the same numbers"),
    Case("registry", (), overrides("visualize.kpt_thr=0.9"), ("visualize",), "visualize.kpt_thr"),
]


def _with_external_data(s: Setup) -> list[str]:
    resave(s.detector, save_as_external_data=True, all_tensors_to_one_file=True, location="det.onnx.data")
    return []


POSE_PIPELINE = [{"type": "TopDownAffine", "image_size": [192, 256]}]
# Cases on a third base (an MMDeploy-style folder): the detector saved with its weights in
# det.onnx.data, the pose export without the runner's record but with a pipeline.json.
EXTERNAL = [
    Case("external", ("detect: external data det.onnx.data",), nudge_external_weight, EVERY,
         "one weight of the .data file"),
    Case("external", ("pose: pipeline.json",), edit(lambda s: s.pose_file, [*POSE_PIPELINE, {
        "type": "TopDownGetBboxCenterScale", "padding": 1.3}]), DOWN_FROM_POSE, "the box padded 1.3x"),
]



@pytest.fixture(scope="module")
def warm(tmp_path_factory, make_checkpoint):
    """Each base's folder, its files and its cache after one run (copied by every case)."""
    root = tmp_path_factory.mktemp("keys")
    found = {}
    for base in ("files", "registry", "external"):
        folder = root / base
        (folder / "images").mkdir(parents=True)
        shutil.copyfile(COCO / IMAGE, folder / "images" / IMAGE)
        for sub in ("det", "pose", "gt", "ckpt"):
            (folder / sub).mkdir()
        shutil.copyfile(WEIGHTS / "rtmdet-nano_person_end2end.onnx", folder / "det" / "det.onnx")
        shutil.copyfile(COCO / "test_coco.json", folder / "gt" / "gt.json")
        shutil.copyfile(make_checkpoint("rtmpose_t")[0], folder / "ckpt" / "rtmpose_t.pth")
        shutil.copyfile(make_checkpoint("rtmpose_t", seed=1)[0], folder / "ckpt" / "rtmpose_t_seed1.pth")
        found[base] = folder
    # the runner's own export of RTMPose-t, made by a registry run, given to the "files" bases as a model file
    made = runner.run(recipe="body_rtmpose", input=found["registry"] / "images" / IMAGE,
                      output_dir=root / "export-run", overrides=[
                          "detect/model=onnx", f"detect.model.path={found['registry'] / 'det' / 'det.onnx'}",
                          "pose/model=rtmpose_t", f"pose.model.checkpoint={found['registry'] / 'ckpt' / 'rtmpose_t.pth'}",
                          f"backend.dir={root / 'exports'}", f"cache.dir={root / 'export-cache'}"])
    assert made.manifest["status"] == "ok"
    (export,) = exports_in(root / "exports", "rtmpose_t-*.onnx")
    for base in ("files", "external"):
        shutil.copyfile(export, found[base] / "pose" / "pose.onnx")
    shutil.copyfile(export.with_suffix(".json"), found["files"] / "pose" / "pose.json")
    pipeline_json(found["external"] / "pose", POSE_PIPELINE)
    for base, folder in found.items():
        setup = Setup(base, folder)
        if base == "external":
            _with_external_data(setup)
        first = setup.run([f"backend.dir={root / 'exports'}"], "base-run")
        assert first.manifest["status"] == "ok" and first.stages["pose"]["computed"] > 0
        again = setup.run([f"backend.dir={root / 'exports'}"], "base-again")
        assert all(again.stages[s]["computed"] == 0 for s in STAGES if s in again.stages), again.stages
        shutil.rmtree(folder / "base-run")
        shutil.rmtree(folder / "base-again")
    return {**found, "exports": root / "exports"}


def computed(result) -> dict[str, int]:
    return {s: result.stages[s]["computed"] for s in STAGES if s in result.stages}


@pytest.mark.parametrize("case", [*TABLE, *EXTERNAL], ids=lambda c: c.id)
def test_a_stage_recomputes_exactly_when_what_it_reads_changed(case, warm, tmp_path, monkeypatch):
    setup = Setup.copy_of(case.base, warm[case.base], tmp_path / "case", monkeypatch)
    extra = case.change(setup)
    result = setup.run([*extra, f"backend.dir={warm['exports']}"], "changed")
    assert result.manifest["status"] == "ok", result.manifest.get("error") or result.failed
    done = computed(result)
    assert {s for s, n in done.items() if n} == set(case.recomputes), done
    assert set(case.covers) - {"pose: input"} <= declared_inputs(result.manifest)  # what it changes is declared


def declared_inputs(manifest: dict) -> set[str]:
    """"stage: input" for every input a run's manifest says a stage declared."""
    found = set()
    for stage, stats in manifest["stages"].items():
        reads = stats.get("reads")
        if reads:
            found |= {f"{stage}: {role}" for role in reads["files"]}
            found |= {f"{stage}: params.{name}" for name in reads["params"] if name != "engine"}
            found |= {f"{stage}: code", f"{stage}: libs", *([f"{stage}: runs_on"] if reads["runs_on"] else [])}
    return found


def test_every_declared_input_has_a_case(warm, tmp_path, monkeypatch):
    """The table covers every input the base runs' stages declare (a new one
    needs its case), and every case covers inputs that are declared."""
    covered = {c for case in [*TABLE, *EXTERNAL] for c in case.covers}
    declared = set()
    for base in ("files", "registry", "external"):
        setup = Setup.copy_of(base, warm[base], tmp_path / base, monkeypatch)
        declared |= declared_inputs(setup.run([f"backend.dir={warm['exports']}"], "run").manifest)
    assert not declared - covered, f"declared inputs with no case: {sorted(declared - covered)}"


# -- what else comes from the declaration -----------------------------------------------------
def test_replay_names_a_changed_external_data_file_before_any_image(warm, tmp_path, monkeypatch):
    """An ONNX model's weights in x.onnx.data are part of what the run read: a
    change there is named by replay, as a changed checkpoint is (issue 24, item 2)."""
    from runner.errors import RunnerError
    from runner.replay import replay
    setup = Setup.copy_of("external", warm["external"], tmp_path / "case", monkeypatch)
    setup.run([f"backend.dir={warm['exports']}"], "run")
    nudge_external_weight(setup)
    with pytest.raises(RunnerError, match=r"the detect step's external data det.onnx.data changed since the run"):
        replay(setup.root / "run", setup.root / "replayed")
    assert not (setup.root / "replayed" / "predictions").exists()


def test_a_new_describer_describes_the_export_again(warm, tmp_path, monkeypatch):
    """A fix in native/describe.py (another description of the same config) is
    what the poses are computed with: the export's record is described again
    and the poses recompute (issue 24, item 5)."""
    from runner import engines
    from runner.native import describe
    setup = Setup.copy_of("registry", warm["registry"], tmp_path / "case", monkeypatch)
    fixed = dict(engines.native_description(str(load_entry_config("rtmpose_t"))), padding=1.3)
    monkeypatch.setattr(describe, "describer", lambda: "a describer with a fix")
    monkeypatch.setattr(engines, "native_description", lambda config: fixed)
    result = setup.run([f"backend.dir={warm['exports']}"], "fixed")
    assert result.stages["pose"]["computed"] > 0 and result.stages["detect"]["computed"] == 0
    assert result.manifest["stages"]["pose"]["reads"]["params"]["description"]["padding"] == 1.3
    record = json.loads(export_of(setup, warm["exports"]).with_suffix(".json").read_text())
    assert record["described_by"] == "a describer with a fix" and record["model"]["padding"] == 1.3
    monkeypatch.undo()
    again = Setup("registry", setup.root).run([f"backend.dir={warm['exports']}"], "back")  # described anew, again
    assert again.stages["pose"]["computed"] == 0 and \
        again.manifest["stages"]["pose"]["reads"]["params"]["description"]["padding"] == 1.25


def export_of(setup: Setup, folder: Path) -> Path:
    """The runner's export of the registry base's RTMPose-t checkpoint in `folder`."""
    from runner.backends.files import ExportSpec
    from runner.hashing import sha256_file
    checkpoint = setup.root / "ckpt" / "rtmpose_t.pth"
    return ExportSpec.of(str(checkpoint), sha256_file(checkpoint), load_entry_config("rtmpose_t"), "mmpose",
                         (192, 256), str(folder)).path


def load_entry_config(name: str) -> str:
    from runner.models.registry import load_entry
    return str(load_entry(name).config)


def test_a_record_beside_a_model_file_is_trusted_only_when_it_names_the_files_sha256(warm, tmp_path, monkeypatch):
    """Any .json beside a user's ONNX file is not the runner's record of it: only
    one naming that file's sha256 describes it (and is then one of its files)."""
    setup = Setup.copy_of("files", warm["files"], tmp_path / "case", monkeypatch)
    record = setup.pose_file.with_suffix(".json")
    ours = json.loads(record.read_text())
    record.write_text(json.dumps({**ours, "sha256": "0" * 64}))  # another file's record
    result = setup.run([f"backend.dir={warm['exports']}", "pose.model.input_size=[192,256]", "pose.model.num_keypoints=17"],
                       "other-record")
    reads = result.manifest["stages"]["pose"]["reads"]
    assert "export record" not in reads["files"]
    assert reads["params"]["flip_test"] is False  # a bare SimCC file: rtmlib's protocol, no flip test
    record.write_text(json.dumps(ours))
    trusted = setup.run([f"backend.dir={warm['exports']}"], "ours")
    assert trusted.manifest["stages"]["pose"]["reads"]["files"]["export record"]["path"] == str(record)
    assert trusted.manifest["stages"]["pose"]["reads"]["params"]["flip_test"] is True  # the model config's


def test_a_merge_on_a_host_with_other_library_versions_reads_the_shards_entries(warm, tmp_path, monkeypatch):
    """The merge rebuilds the model stages' keys with the versions the shards
    recorded: a CPU submit host with another onnxruntime merges what the shards
    computed, byte for byte (issue 24, item 17); shards that disagree are named."""
    import subprocess
    import sys
    from runner import versions
    from runner.errors import RunnerError
    from runner.merge import merge_all, recorded_libs, sharded_groups
    from runner.sweep import collect
    setup = Setup.copy_of("files", warm["files"], tmp_path / "case", monkeypatch)
    sweep = tmp_path / "sweep"
    done = subprocess.run([sys.executable, "-m", "runner", "-m", "recipe=body_rtmpose",
                           f"input={COCO}", *_files_base(setup), f"cache.dir={setup.cache}",
                           f"backend.dir={warm['exports']}", "shard.count=2", "shard.index=0,1",
                           f"hydra.sweep.dir={sweep}"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    real = versions.version
    monkeypatch.setattr(versions, "version", lambda name: "99.0" if name in ("onnxruntime", "cv2") else real(name))
    shutil.move(sweep / "merged", tmp_path / "merged-by-the-sweep")
    (merged,) = merge_all(collect(sweep))
    assert merged.error is None and merged.complete, merged.line()
    pose = merged.manifest["stages"]["pose"]
    assert pose["computed"] == 0 and pose["cache_hits"] == pose["units"] > 0
    assert pose["reads"]["libs"]["onnxruntime"] == real("onnxruntime")  # what computed the entries
    for name in ("predictions", "results_coco.json"):
        a, b = tmp_path / "merged-by-the-sweep" / name, sweep / "merged" / name
        files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file()) if a.is_dir() else [Path()]
        assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files), name
    other = json.loads((sweep / "1" / "manifest.json").read_text())
    other["stages"]["pose"]["reads"]["libs"]["onnxruntime"] = "1.0"
    (sweep / "1" / "manifest.json").write_text(json.dumps(other))
    with pytest.raises(RunnerError, match=r"the shards computed pose with other library versions \(shards 0: .*"
                                          r"shards 1: .*onnxruntime 1.0"):
        recorded_libs(sharded_groups(collect(sweep))[0])
