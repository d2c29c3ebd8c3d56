"""Model families: one module each (mmdet detectors, top-down pose, RTMO,
InterNet), with pre-processing, forward and post-processing kept apart."""
