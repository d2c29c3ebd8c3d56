"""The model registry: one YAML entry per model under conf/detect/model and
conf/pose/model (they are also the Hydra options `detect/model=` and `pose/model=`)."""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from runner.config import options
from runner.errors import RunnerError
from runner.paths import CONF_DIR

GROUPS = ("detect", "pose")


def names(group: str) -> list[str]:
    return options(f"{group}/model")


def entries(group: str) -> list[DictConfig]:
    return [OmegaConf.load(CONF_DIR / group / "model" / f"{n}.yaml") for n in names(group)]


def load_entry(name: str) -> DictConfig:
    for group in GROUPS:
        if name in names(group):
            return OmegaConf.load(CONF_DIR / group / "model" / f"{name}.yaml")
    known = ", ".join(names("detect") + names("pose"))
    raise RunnerError(f"unknown model {name!r}: choose one of {known}")
