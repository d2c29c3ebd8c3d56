"""Checkpoints: resolving and downloading them (download.py) and loading them
with torch's weights_only unpickler (safe_load.py)."""
