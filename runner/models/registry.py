"""The model registry: one YAML entry per model under conf/detect/model and
conf/pose/model (they are also the Hydra options `detect/model=` and `pose/model=`)."""
from __future__ import annotations

from omegaconf import DictConfig, OmegaConf

from runner.errors import RunnerError
from runner.paths import CONF_DIR

GROUPS = {"detect": CONF_DIR / "detect" / "model", "pose": CONF_DIR / "pose" / "model"}


def names(group: str) -> list[str]:
    return sorted(p.stem for p in GROUPS[group].glob("*.yaml"))


def entries(group: str) -> list[DictConfig]:
    return [OmegaConf.load(GROUPS[group] / f"{n}.yaml") for n in names(group)]


def load_entry(name: str) -> DictConfig:
    for group, folder in GROUPS.items():
        path = folder / f"{name}.yaml"
        if path.is_file():
            return OmegaConf.load(path)
    known = ", ".join(names("detect") + names("pose"))
    raise RunnerError(f"unknown model {name!r}: choose one of {known}")
