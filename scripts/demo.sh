#!/usr/bin/env bash
# `make demo`: body_rtmpose (RTMDet-m person + RTMPose-m body8) on a folder of
# images. With the official checkpoints (downloaded, cached, or found in
# $POSE_RUNNER_MIRROR) the overlays show real poses. Offline, it says so and
# uses checkpoints made locally (real architectures, random weights): every
# step runs for real, but the keypoints are meaningless.
set -euo pipefail
cd "$(dirname "$0")/.."
INPUT=${1:-../shared/data/coco}
PY=.venv/bin/python
MIRROR=${POSE_RUNNER_MIRROR:+--mirror $POSE_RUNNER_MIRROR}

if $PY -m runner.models fetch rtmdet_m_person rtmpose_m $MIRROR; then
  exec $PY -m runner recipe=body_rtmpose input="$INPUT" ${POSE_RUNNER_MIRROR:+download.mirror=$POSE_RUNNER_MIRROR}
fi
echo "demo: the official checkpoints cannot be had here (offline); using locally made ones instead." >&2
echo "demo: set POSE_RUNNER_MIRROR=FOLDER (official .pth files) for real poses." >&2
made=$($PY -m runner.models.fabricate rtmdet_m_person rtmpose_m --out .cache/demo-checkpoints --calibrate "$INPUT")
det=$(echo "$made" | sed -n 1p)
pose=$(echo "$made" | sed -n 2p)
exec $PY -m runner recipe=body_rtmpose input="$INPUT" detect.model.checkpoint="$det" pose.model.checkpoint="$pose"
