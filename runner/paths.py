"""Where the project's config trees live (beside the package in a clone)."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"

