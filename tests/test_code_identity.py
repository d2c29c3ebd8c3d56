"""A cached computation's code identity cannot be forgotten: a change to what a
class computes with (pre-processing, decoding, drawing, metrics) must bump its
code_version or be recorded, with the reason, as leaving results unchanged
(tests/code_identity.py says how)."""
from __future__ import annotations

import copy
import json

import code_identity
from code_identity import RECORD, computes_with, current, problems, versioned


def test_every_cached_computation_is_recorded_as_it_is():
    found = problems(json.loads(RECORD.read_text()), current())
    assert not found, "\n".join(found)


def test_a_change_in_decoding_without_a_new_version_is_caught():
    now = current()
    recorded = copy.deepcopy(now)
    name = "runner.native.topdown.NativeTopdown"
    recorded[name]["sources"]["runner.native.decode"] = "0" * 16  # decode.py as it was before an edit
    (line,) = problems(recorded, now)
    assert line.startswith(name) and "runner.native.decode" in line and "bump it" in line
    now[name]["version"] += 1  # bumped: keyed anew, nothing to say
    assert problems(recorded, now) == []


def test_each_engine_is_held_to_its_own_pre_and_post_processing():
    classes = versioned()
    native = computes_with(classes["runner.native.topdown.NativeTopdown"])
    assert {"runner.native.preprocess", "runner.native.decode", "runner.native.keypoints"} <= set(native)
    assert "runner.native.draw" in computes_with(classes["runner.stages.visualize.Visualize"])
    assert "runner.evaluation" in computes_with(classes["runner.stages.evaluate.Evaluate"])
    assert "runner.models.mmdet_detector" in computes_with(classes["runner.native.detector.NativeDetector"])
    assert not any(m.startswith("runner.stages.base") for m in native)  # the cache engine is not a computation


def test_layout_only_changes_do_not_count(tmp_path, monkeypatch):
    (tmp_path / "runner").mkdir()
    src = "def f(x):\n    return x + 1\n"
    (tmp_path / "runner" / "m.py").write_text(src)
    monkeypatch.setattr(code_identity, "ROOT", tmp_path)
    before = code_identity.identity("runner.m")
    (tmp_path / "runner" / "m.py").write_text('"""Doc."""\n# a comment\ndef f(x):\n    """Adds one."""\n\n    return x + 1  # why\n')
    assert code_identity.identity("runner.m") == before
    (tmp_path / "runner" / "m.py").write_text(src.replace("+ 1", "+ 2"))
    assert code_identity.identity("runner.m") != before


def test_what_changes_numbers_beyond_the_imports_is_in_the_identity():
    """The runtimes' sessions (graph optimisation, OpenVINO hints, int8, autocast),
    input decoding and what goes into keys change results without being imported
    by the estimators' modules: they are declared (issue 24, item 6)."""
    from runner.models.topdown import TopdownEstimator
    from runner.native.detector import NativeDetector
    from runner.native.topdown import NativeTopdown
    from runner.stages.visualize import Visualize
    for cls in (NativeTopdown, NativeDetector):
        assert {"runner.backends.network", "runner.backends.openvino", "runner.inputs",
                "runner.engines"} <= set(code_identity.computes_with(cls))
    assert {"runner.backends.pytorch", "runner.backends.network", "runner.backends.openvino", "runner.inputs",
            "runner.engines"} <= set(code_identity.computes_with(TopdownEstimator))
    assert "runner.inputs" in code_identity.computes_with(Visualize)
