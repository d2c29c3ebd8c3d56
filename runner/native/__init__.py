"""The ONNX-native engine: pre-processing, decoding and drawing in numpy and
OpenCV around a network run by ONNX Runtime or OpenVINO, with no torch,
mmcv, mmdet or mmpose in the process. One module per concern, as rtmlib keeps
them: keypoint sets (keypoints), image -> network input (preprocess), network
output -> keypoints and boxes (decode), the network itself (network), model
descriptions (describe), the estimators composed from them (topdown,
detector), and overlays (draw). MediaPipe's trained networks are families of
their own here (blazepose, palm, hand; their shared crop geometry in
mediapipe): MediaPipe's graphs reproduced, not MMPose's.

It reproduces MMPose's and MMDetection's own inference step for step (the
same crops, the same float32 arithmetic); tests/test_native.py holds it to
MMPose's inference_topdown / inference_detector within the float32 tolerance
of tests/reference.py."""

# What every native estimator computes with beyond its imports (tests/code_identity.py): the runtimes'
# sessions and hints, input decoding, and what goes into its keys.
COMPUTES_WITH = ("runner.backends.network", "runner.backends.openvino", "runner.inputs", "runner.engines",
                 "runner.stages.model", "runner.stages.reads")
