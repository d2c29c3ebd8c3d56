"""The config schema (runner/schema.py) states each key's type, default, range
and meaning once: the YAML files hold no second default, Hydra refuses a wrong
type at composition in the rule's words, --help is made from it."""
from __future__ import annotations

import subprocess
import sys

import yaml
from omegaconf import OmegaConf

from conftest import ROOT
from runner import schema
from runner.config import compose_config
from runner.paths import CONF_DIR


def leaves(node, prefix=""):
    for k, v in node.items():
        if isinstance(v, dict) and not k == "model" and v:
            yield from leaves(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}"


def test_every_composed_key_is_in_the_schema_and_nowhere_else():
    keys = {name for name, *_ in schema.keys()}
    for recipe in ("body_rtmpose", "hand3d_internet", "wholebody_rtmw"):
        cfg = OmegaConf.to_container(compose_config([f"recipe={recipe}", "input=x"]), resolve=False)
        sections = {name.rsplit(".", 1)[0] for name in keys}  # an optional section left out (pose.camera)
        assert set(leaves(cfg)) <= keys | sections, set(leaves(cfg)) - keys
    root = yaml.safe_load((CONF_DIR / "config.yaml").read_text())
    assert list(root) == ["defaults"]  # the defaults list only: every value is the schema's
    for group in ("device", "backend", "cache", "output"):  # a choice's file holds what tells it apart
        for path in (CONF_DIR / group).glob("*.yaml"):
            assert len(yaml.safe_load(path.read_text()) or {}) <= 1, path


def test_a_wrong_type_is_refused_at_composition_in_the_rules_words():
    import pytest
    from runner.errors import RunnerError
    for override, words in [("detect.batch_size=2.5", "detect.batch_size=2.5 is not a positive whole number"),
                            ("dry_run=maybe", "dry_run=maybe is not true or false"),
                            ("cache.lock_timeout_s=soon", "cache.lock_timeout_s=soon is not a positive number of sec")]:
        with pytest.raises(RunnerError, match=words):
            compose_config(["input=x", override])


def test_help_is_made_from_the_schema():
    done = subprocess.run([sys.executable, "-m", "runner", "--help"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0
    for name, kind, default, meaning, rule in schema.keys():
        (line,) = [l for l in done.stdout.splitlines() if l.startswith(f"  {name}: ")]
        if rule is not None and rule is not schema.BOOL:
            assert rule.what in line
        assert not meaning or meaning in done.stdout


def test_the_recipe_steps_are_the_families_steps():
    from runner.families import MODEL_STEPS, STEPS
    assert sorted(schema.STEPS) == sorted([*MODEL_STEPS, *STEPS])
