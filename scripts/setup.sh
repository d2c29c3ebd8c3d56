#!/usr/bin/env bash
# Builds .venv with the pinned MMPose stack (requirements.lock), handling each
# known breakage of `pip install mmpose mmdet mmcv` on purpose.
# Idempotent: on a ready .venv it only checks a stamp and exits in seconds.
#
#   scripts/setup.sh            # create or update .venv
#   PYTHON=python3.11 scripts/setup.sh
#
# Prebuilt wheels are taken from $PIP_FIND_LINKS (space-separated dirs) and
# from the wheel cache ($POSE_RUNNER_WHEEL_CACHE, default
# ~/.cache/pose-runner/wheels), where a locally built mmcv wheel is kept.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

PYTHON=${PYTHON:-python3.11}
VENV=.venv
LOCK=requirements.lock
WHEEL_CACHE=${POSE_RUNNER_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/pose-runner/wheels}
STAMP=$VENV/.pose-runner-setup
# mmcv-2.1.0.tar.gz as published on PyPI: the build starts from exactly this source.
MMCV_SDIST_SHA256=d387bcab66b467479b6660310e23746cfc79c6e57acf04094680adb499a5cd3f

log() { printf '[setup] %s\n' "$*"; }
pinned() { sed -n "s/^$1==//p" "$LOCK"; }

want=$(cat scripts/setup.sh "$LOCK" pyproject.toml | sha256sum | cut -c1-16)
# The project's own bytecode, as pip compiles every other package's at install:
# an environment with PYTHONDONTWRITEBYTECODE would otherwise compile the runner's
# modules from source on every run (about 0.2 s of a one-image run).
compile_runner() { "$VENV/bin/python" -m compileall -q -j 0 runner >/dev/null; }
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$want" ] \
   && "$VENV/bin/python" -c "import runner, mmcv.ops" 2>/dev/null; then
  compile_runner
  log "$VENV is ready (nothing to do)"
  exit 0
fi

if [ ! -x "$VENV/bin/python" ]; then
  command -v "$PYTHON" >/dev/null || { echo "setup: $PYTHON not found; install Python 3.11 or set PYTHON=/path/to/python3.11" >&2; exit 1; }
  # torch's local-disk build and the mmcv wheel are cp311 only.
  "$PYTHON" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' \
    || { echo "setup: $PYTHON is not Python 3.11; set PYTHON=/path/to/python3.11" >&2; exit 1; }
  log "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
mkdir -p "$WHEEL_CACHE"
export PIP_FIND_LINKS="$WHEEL_CACHE${PIP_FIND_LINKS:+ $PIP_FIND_LINKS}"

# 1. Everything but the two source builds, exactly as locked. --no-deps: the
#    lock is complete, and it keeps pip from resolving mmpose's `chumpy`
#    requirement (chumpy does not build, and mmpose never imports it).
log "installing the locked packages (torch 2.14.1 comes from this machine's disk)"
grep -vE '^(mmcv|xtcocotools)==' "$LOCK" > "$VENV/lock-base.txt"
"${PIP[@]}" install -q --no-deps -r "$VENV/lock-base.txt"

# 2. mmcv with compiled ops. PyPI has only its source for 2.1.0 (mmdet 3.3.0
#    asserts mmcv < 2.2.0 at import, so 2.2 is not an option). A prebuilt
#    wheel from the wheel cache or $PIP_FIND_LINKS is used when present.
MMCV=$(pinned mmcv)
if ! "${PIP[@]}" install -q --no-deps --only-binary mmcv "mmcv==$MMCV" 2>/dev/null; then
  log "no prebuilt mmcv $MMCV wheel for this torch: building it from source (about 15 minutes on 2 cores)"
  build=$(mktemp -d)
  trap 'rm -rf "$build"' EXIT
  # mmcv's setup.py imports pkg_resources APIs that setuptools>=70 broke, while
  # torch needs setuptools>=77 at run time: give only the build an old one.
  "${PIP[@]}" install -q --target "$build/tools" "setuptools==69.5.1"
  export PYTHONPATH="$build/tools"
  "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV" -d "$build"
  echo "$MMCV_SDIST_SHA256  $build/mmcv-$MMCV.tar.gz" | sha256sum -c --quiet -
  tar xzf "$build/mmcv-$MMCV.tar.gz" -C "$build"
  # torch 2.14's headers need C++20 ("#error C++20 or later compatible compiler
  # is required to use ATen"); mmcv 2.1.0 hard-codes -std=c++17.
  sed -i 's/-std=c++17/-std=c++20/g' "$build/mmcv-$MMCV/setup.py"
  # --no-build-isolation: the extension compiles against the installed torch.
  (cd "$build/mmcv-$MMCV" && MMCV_WITH_OPS=1 MAX_JOBS=$(nproc) \
    "$ROOT/$VENV/bin/python" -m pip --disable-pip-version-check wheel -q --no-build-isolation --no-deps . -w "$WHEEL_CACHE")
  unset PYTHONPATH
  "${PIP[@]}" install -q --no-deps --only-binary mmcv "mmcv==$MMCV"
fi

# 3. xtcocotools: its PyPI wheels are compiled against numpy 1 and fail on
#    numpy 2 ("numpy.dtype size changed"); compile it against the installed
#    numpy (pip keeps the built wheel in its own cache for the next set-up).
"${PIP[@]}" install -q --no-deps --no-build-isolation --no-binary xtcocotools "xtcocotools==$(pinned xtcocotools)"

# 4. This project, editable, without re-resolving its dependencies.
"${PIP[@]}" install -q --no-deps --no-build-isolation -e .

# The lock must be complete: the only missing requirement allowed is chumpy.
if "${PIP[@]}" check | grep -v "requires chumpy, which is not installed" | grep .; then
  echo "setup: requirements.lock is incomplete (see above); add the packages and re-run" >&2
  exit 1
fi
"$VENV/bin/python" -c "import mmcv.ops, mmdet, mmpose, runner" \
  || { echo "setup: the stack does not import; run: $VENV/bin/python -m runner.doctor" >&2; exit 1; }
compile_runner
echo "$want" > "$STAMP"
log "done: $VENV is ready ($VENV/bin/python -m runner.doctor checks it)"
