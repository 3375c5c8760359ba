"""Exporters from the Python side to the C core (``micro_ros_firmware/core``).

* :mod:`.c_model` — the frozen int8 ONNX extractor as C source (TyBox-style code generation);
* :mod:`.c_state` — CWR* / NearestCentroid state in the C core's binary format, both ways;
* :mod:`.c_vectors` — parity test vectors (real MNIST through onnxruntime and the Python core).
"""
