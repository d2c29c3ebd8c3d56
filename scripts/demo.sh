#!/usr/bin/env bash
# `make demo`: body pose on a folder of images (default ../shared/data/coco).
# With the official checkpoints (downloaded, cached, or found in $POSE_RUNNER_MIRROR):
# body_rtmpose as the guide pairs it, RTMDet-m person -> RTMPose-m body8.
#
# Offline, it says so and runs TRAINED models all the same, from $POSE_RUNNER_WEIGHTS
# (default ../shared/weights): the RTMDet-nano person detector (an MMDeploy end2end
# ONNX file) and MediaPipe's BlazePose full (17 COCO keypoints of its 33): real boxes,
# real poses. Only where those files are missing too are the models made locally from
# their configs (random weights: every step runs for real, the keypoints are meaningless).
set -euo pipefail
cd "$(dirname "$0")/.."
INPUT=${1:-../shared/data/coco}
WEIGHTS=${POSE_RUNNER_WEIGHTS:-../shared/weights}
PY=.venv/bin/python
MIRROR=${POSE_RUNNER_MIRROR:+--mirror $POSE_RUNNER_MIRROR}
DETECTOR=$WEIGHTS/rtmdet-nano_person_end2end.onnx
BLAZEPOSE=$WEIGHTS/blazepose_landmark_full.onnx

if $PY -m runner.models fetch rtmdet_m_person rtmpose_m $MIRROR; then
  exec $PY -m runner recipe=body_rtmpose input="$INPUT" ${POSE_RUNNER_MIRROR:+download.mirror=$POSE_RUNNER_MIRROR}
fi
echo "demo: the official checkpoints cannot be had here (offline)." >&2
if [ -f "$DETECTOR" ] && [ -f "$BLAZEPOSE" ]; then
  echo "demo: the trained RTMDet-nano person detector and BlazePose full from $WEIGHTS (real boxes, real poses)." >&2
  exec $PY -m runner recipe=body_rtmpose input="$INPUT" detect/model=onnx detect.model.path="$DETECTOR" \
    pose/model=blazepose_full pose.model.path="$BLAZEPOSE"
fi
echo "demo: no trained models in $WEIGHTS either: boxes and keypoints from locally made models (meaningless)." >&2
det=$($PY -m runner.models.fabricate rtmdet_m_person --out .cache/demo-checkpoints --calibrate "$INPUT")
pose=$($PY -m runner.models.fabricate rtmpose_m --out .cache/demo-checkpoints --calibrate "$INPUT")
exec $PY -m runner recipe=body_rtmpose input="$INPUT" detect.model.checkpoint="$det" pose.model.checkpoint="$pose"
