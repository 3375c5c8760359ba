"""extractor node: images → features with the frozen ONNX model (fp32 or int8, onnxruntime).

For a replayed dataset it joins each image with its ``ground_truth`` (same stamp) and passes the
true label on in ``Features`` (``labelled`` when the system may learn it). Images leave in the
order they came: one waiting for its ground truth holds back the ones behind it, for at most
``truth_timeout_s``.

``input: imu`` takes ``ImuWindow`` on ``imu`` instead (IMU or vibration windows, samples x
channels): the model's input must be (channels, samples) — e.g. ``har_elm`` (6, 50), ``cwru_elm``
(1, 1024) — and a window of another shape is one error line and dropped. Raw sensor values go in
as they are (the ELM models normalise inside the graph).
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from ..core.errors import InputError, TinyclError
from ..extractor import FrozenExtractor, model_path
from ..interfaces import as_sequence
from .messages import image_pixels, stamp_ns
from .runner import ImageQos, ManagedParams, Node, run_node
from .truth_join import TruthJoin



class ExtractorParams(ManagedParams):
    model: str = Field("mnist_0to5_fp32", description="frozen ONNX feature model: a shipped name or path to an "
                                                      ".onnx file")
    input: Literal["image", "imu"] = Field("image", description="sensor_msgs/Image on image | ImuWindow on imu")
    threads: int = Field(1, ge=1, le=64, description="onnxruntime intra-op threads of the model")
    image_qos: ImageQos = "sensor_data"
    expect_ground_truth: bool = Field(False, description="true when a labelled dataset is replayed: a sample "
                                                         "waits for its ground_truth")
    truth_timeout_s: float = Field(1.0, gt=0, description="seconds a sample waits for its ground truth before it "
                                                          "goes on without")


class Extractor(Node):
    """A managed node: ``configure`` loads the ONNX model, ``cleanup`` releases it."""

    Params = ExtractorParams
    managed = True

    def configure(self) -> None:
        params, bus = self.params, self.bus
        self.model = FrozenExtractor(model_path(params.model), threads=params.threads)
        if params.input == "imu":
            if len(self.model.input_shape) != 2:
                raise TinyclError(f"extractor: model input {self.model.input_shape} is not (channels, samples): "
                                  f"not an IMU/vibration model (input: imu)")
            self.shape = self.model.input_shape
        else:
            if len(self.model.input_shape) != 3 or self.model.input_shape[0] != 1:
                raise TinyclError(f"extractor: model input {self.model.input_shape} is not a 1-channel image "
                                  f"(for IMU/vibration windows set input: imu)")
            self.shape = self.model.input_shape[1:]
        self.Features = bus.msg("Features")
        self.pub = self.track(bus.create_publisher("features", self.Features, "reliable"))
        self.downstream = [self.pub]
        self.join = TruthJoin(self._emit, params.truth_timeout_s, params.expect_ground_truth, self.log)
        self.sample_id = 0
        self.track(bus.create_subscription("ground_truth", "GroundTruth", self.gated(self.on_truth), "reliable"))
        if params.input == "imu":
            self.track(bus.create_subscription("imu", "ImuWindow", self.gated(self.on_imu), params.image_qos))
        else:
            self.track(bus.create_subscription("image", "sensor_msgs/msg/Image", self.gated(self.on_image),
                                               params.image_qos))
        if params.expect_ground_truth:
            self.track(bus.create_timer(params.truth_timeout_s / 2, self.join.flush))
        self.log.info("model %s (%s…), %d features", self.model.path.name, self.model.hash[:12],
                      self.model.n_features)
        super().configure()

    def on_truth(self, msg: Any) -> None:
        self.join.add_truth(stamp_ns(msg.header), msg)

    def on_imu(self, msg: Any) -> None:
        self.on_image(msg, imu_window(msg, self.shape))

    def on_image(self, msg: Any, window: np.ndarray | None = None) -> None:
        pixels = image_pixels(msg, self.shape) if window is None else window  # InputError → one line, dropped
        self.join.add_sample(stamp_ns(msg.header), msg.header, pixels)

    def _emit(self, header: Any, pixels: np.ndarray, truth: Any) -> None:
        feats = self.model.extract_one(pixels)
        self.pub.publish(self.Features(
            header=header, data=as_sequence(feats, "f"), extractor_hash=self.model.hash, sample_id=self.sample_id,
            true_label=-1 if truth is None else int(truth.label),
            labelled=bool(truth is not None and truth.learnable)))
        self.sample_id += 1


def imu_window(msg: Any, shape: tuple[int, ...]) -> np.ndarray:
    """An ImuWindow (samples x channels, row-major) as float32 (channels, samples); InputError otherwise."""
    channels, samples = shape
    n_ch = int(msg.n_channels)
    data = np.asarray(msg.data, np.float32)
    if n_ch != channels:
        raise InputError(f"imu window has {n_ch} channels, the extractor takes {channels} (x {samples} samples)")
    if data.size != channels * samples:
        raise InputError(f"imu window has {data.size} values, the extractor takes {channels} channels x "
                         f"{samples} samples = {channels * samples}")
    if not np.isfinite(data).all():
        raise InputError("imu window contains NaN or inf")
    return np.ascontiguousarray(data.reshape(samples, channels).T)


def main(argv: list[str] | None = None) -> int:
    return run_node(Extractor, "extractor", argv)


if __name__ == "__main__":
    raise SystemExit(main())
