#!/usr/bin/env bash
# `make demo`: body_rtmpose (a person detector + RTMPose-m body8) on a folder of
# images. With the official checkpoints (downloaded, cached, or found in
# $POSE_RUNNER_MIRROR) the overlays show real boxes and real poses.
#
# Offline, it says so and uses what these machines can have: the TRAINED
# RTMDet-nano person detector of ../shared/weights (an MMDeploy end2end ONNX
# file: real boxes around the people) and an RTMPose-m made locally from its
# config (real architecture, random weights: every step runs for real, but the
# keypoints are meaningless).
set -euo pipefail
cd "$(dirname "$0")/.."
INPUT=${1:-../shared/data/coco}
WEIGHTS=${POSE_RUNNER_WEIGHTS:-../shared/weights}
PY=.venv/bin/python
MIRROR=${POSE_RUNNER_MIRROR:+--mirror $POSE_RUNNER_MIRROR}

if $PY -m runner.models fetch rtmdet_m_person rtmpose_m $MIRROR; then
  exec $PY -m runner recipe=body_rtmpose input="$INPUT" ${POSE_RUNNER_MIRROR:+download.mirror=$POSE_RUNNER_MIRROR}
fi
echo "demo: the official checkpoints cannot be had here (offline)." >&2
pose=$($PY -m runner.models.fabricate rtmpose_m --out .cache/demo-checkpoints --calibrate "$INPUT")
if [ -f "$WEIGHTS/rtmdet-nano_person_end2end.onnx" ]; then
  echo "demo: boxes from the trained RTMDet-nano person detector in $WEIGHTS (real people);" \
       "keypoints from a locally made RTMPose-m (random weights: meaningless poses)." >&2
  exec $PY -m runner recipe=body_rtmpose input="$INPUT" detect/model=onnx \
    detect.model.path="$WEIGHTS/rtmdet-nano_person_end2end.onnx" pose.model.checkpoint="$pose"
fi
echo "demo: no trained detector either ($WEIGHTS): boxes and keypoints both from locally made models (meaningless)." >&2
det=$($PY -m runner.models.fabricate rtmdet_m_person --out .cache/demo-checkpoints --calibrate "$INPUT")
exec $PY -m runner recipe=body_rtmpose input="$INPUT" detect.model.checkpoint="$det" pose.model.checkpoint="$pose"
