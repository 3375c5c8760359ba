"""extractor node: images → features with the frozen ONNX model (fp32 or int8, onnxruntime).

Images come as camera drivers publish them: ``sensor_msgs/Image`` on ``image`` in any size and
encoding ``images.ENCODINGS`` lists, or (``image_transport: compressed``) ``CompressedImage``
JPEG/PNG on ``<image>/compressed``, as image_transport names it. Each goes through the one
preprocessing function the model card parameterises (size, colour, resize, scale, mean/std).

With ``image_qos: sensor_data`` (a camera) the newest frame wins: a frame that arrives while the
previous one is still being processed replaces it, and how many were dropped that way is
reported every ``drop_report_s`` seconds. At most one frame waits, never a queue. A frame it cannot take is
dropped and said as a repeated failure is (``storage.RepeatedFailure``: a camera sends the same bad frame 30
times a second): at once, the same problem again once a minute with a count, and once when frames are taken again. With
``reliable`` (a replay) every frame is processed, in order.

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

import threading
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from .. import presets
from ..bus.dds_config import SOCKET_RECEIVE_BUFFER_BYTES, kernel_rmem_max
from ..core.errors import InputError, TinyclError
from ..datasets.cwru import RATE_HZ as CWRU_RATE_HZ
from ..datasets.har import RATE_HZ as HAR_RATE_HZ
from ..extractor import FrozenExtractor, model_card_of, model_path
from ..images import compressed_image_of, image_of
from ..interfaces import as_sequence
from ..storage import RepeatedFailure, one_line
from .diagnostics import Status
from .messages import check_texts, stamp_ns
from .runner import ImageQos, ImageTransport, ManagedParams, Node, run_node
from .truth_join import TruthJoin


class ExtractorParams(ManagedParams):
    model: str = Field("mnist_0to5_fp32", description="frozen ONNX feature model: an .onnx path (the suffix "
                                                      "may be left out), else a shipped model's name")
    input: Literal["image", "imu"] = Field("image", description="sensor_msgs/Image on image | ImuWindow on imu")
    threads: int = Field(1, ge=1, le=64, description="onnxruntime intra-op threads of the model")
    image_qos: ImageQos = "sensor_data"
    image_transport: ImageTransport = "raw"
    drop_report_s: float = Field(10.0, gt=0, description="sensor_data: seconds between two reports of the frames "
                                                         "dropped because a newer one came (newest wins)")
    expect_ground_truth: bool = Field(False, description="true when a labelled dataset is replayed: a sample "
                                                         "waits for its ground_truth")
    truth_timeout_s: float = Field(1.0, gt=0, description="seconds a sample waits for its ground truth before it "
                                                          "goes on without")
    latent_head: bool = Field(False, description="also publish each image's activations at presets.LATENT's cut on "
                                                 "latents (same stamp, sample_id; same forward pass): a learner's "
                                                 "latent_head learns them")


class Extractor(Node):
    """A managed node: ``configure`` loads the ONNX model, ``cleanup`` releases it."""

    Params = ExtractorParams
    managed = True

    def configure(self) -> None:
        params, bus = self.params, self.bus
        if params.latent_head and params.input != "image":
            raise TinyclError("extractor: latent_head takes images (input: image), not IMU windows")
        self.model = FrozenExtractor(model_path(params.model), threads=params.threads,
                                     latent_cut=presets.LATENT["cut"] if params.latent_head else None)
        if params.input == "imu":
            if len(self.model.input_shape) != 2:
                raise TinyclError(f"extractor: model input {self.model.input_shape} is not (channels, samples): "
                                  f"not an IMU/vibration model (input: imu)")
            self.shape = self.model.input_shape
            self.window_rate_hz = model_window_rate(self.model.path)
            self._bad_windows = RepeatedFailure(f"take the IMU windows on {bus.topic_name('imu')}", self.log,
                                                attempts="windows")
        elif self.model.preprocessing is None:
            raise TinyclError(f"extractor: model input {self.model.input_shape} is not an image and its model card "
                              f"has no preprocessing (for IMU/vibration windows set input: imu)")
        self.Features = bus.msg("Features")
        self.pub = self.track(bus.create_publisher("features", self.Features, "reliable"))
        self.latent_pub = self.track(bus.create_publisher("latents", self.Features, "reliable")) \
            if params.latent_head else None
        # no image is handled before features (and latents) have a reader: a volatile sample sent before
        # its reader matched is lost (a learner restoring a large latent head matched after the stream began)
        self.downstream = [self.pub] if self.latent_pub is None else [self.pub, self.latent_pub]
        self.join = TruthJoin(self._emit, params.truth_timeout_s, params.expect_ground_truth, self.log)
        self._join_lock = threading.Lock()   # the newest-wins worker and the truth callback share the join
        self.sample_id = 0
        self.track(bus.create_subscription("ground_truth", "GroundTruth", self.gated(self.on_truth), "reliable"))
        self.newest_wins = params.image_qos == "sensor_data" and params.input == "image"
        self._slot: tuple[Any, bool] | None = None
        self._cv = threading.Condition()
        self._stopping = False
        self.frames = {"received": 0, "processed": 0, "dropped": 0, "bad": 0}
        self._reported = dict(self.frames)
        # a camera sends the same bad frame again and again (an encoding not taken, a depth topic): said once, then
        # once a minute with a count, not 30 lines a second
        self._bad_frames = RepeatedFailure("take the camera's frames", self.log, attempts="frames")
        self._last_stamp: int | None = None        # of the last camera frame: a driver that repeats it is said once
        self._said_stamps = False
        self._rmem_max = kernel_rmem_max()          # a camera frame larger than this is lost whenever we are late
        self._largest_frame = 0                     # bytes of the largest camera frame so far
        if params.input == "imu":
            self.track(bus.create_subscription("imu", "ImuWindow", self.gated(self.on_imu), params.image_qos))
        else:
            compressed = params.image_transport == "compressed"
            topic = bus.topic_name("image") + "/compressed" if compressed else "image"
            kind = "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image"
            callback = (lambda msg: self.on_frame(msg, compressed)) if self.newest_wins else \
                self.gated(lambda msg: self.on_image(msg, compressed))
            self._frames_topic = bus.topic_name(topic)
            self._frames_from = f"{kind} ({params.image_qos}) on {self._frames_topic}"
            self._silent = 0    # reports in a row with no frame
            self.track(bus.create_subscription(topic, kind, callback, params.image_qos))
            if self.newest_wins:
                self._worker = threading.Thread(target=self._work, name="extractor-frames", daemon=True)
                self._worker.start()
                self.track(bus.create_timer(params.drop_report_s, self.report_frames))
        if params.expect_ground_truth:
            self.track(bus.create_timer(params.truth_timeout_s / 2, self._flush))
        pre = self.model.preprocessing
        self.log.info("model %s (%s…), %d features%s", self.model.path.name, self.model.hash[:12],
                      self.model.n_features, "" if pre is None or params.input == "imu" else
                      f"; images → {pre.size[0]}x{pre.size[1]} {pre.color} ({pre.resize}), "
                      f"{params.image_transport} on {bus.topic_name('image')}"
                      f"{'/compressed' if params.image_transport == 'compressed' else ''}")
        super().configure()

    # newest wins (a camera) ---------------------------------------------------------------------
    def on_frame(self, msg: Any, compressed: bool) -> None:
        """A camera frame: kept as the one waiting frame (replacing an older one, counted)."""
        stamp = stamp_ns(msg.header)
        if stamp == self._last_stamp and not self._said_stamps:
            # the labeler keeps the raw frames by stamp to show a question's picture: with one stamp for all, it
            # would show whichever frame came last
            self._said_stamps = True
            self.log.warning("camera frames on %s repeat their stamp (%d.%09d): tinycl knows a sample by its stamp, "
                             "so a question may show another frame than the one it asks about; have the driver "
                             "stamp each frame with its capture time", self._frames_topic,
                             stamp // 10**9, stamp % 10**9)
        size = len(msg.data)
        # can a socket hold it? Checked as the frames grow (the first, or a driver reconfigured to a larger size);
        # said once, when they first outgrow the kernel's limit
        if size > self._largest_frame:
            outgrown = self._rmem_max is not None and size > self._rmem_max >= self._largest_frame
            self._largest_frame = size
            if outgrown:
                self.log.warning("camera frames of %.1f MiB are larger than the socket receive buffer this kernel "
                                 "allows (net.core.rmem_max %d KiB): DDS loses a best-effort frame whenever this "
                                 "node is late to read it. Raise it: sudo sysctl -w net.core.rmem_max=%d (and in "
                                 "/etc/sysctl.d/)", size / 2**20, self._rmem_max // 1024,
                                 SOCKET_RECEIVE_BUFFER_BYTES)
        self._last_stamp = stamp
        with self._cv:
            self.frames["received"] += 1
            if self._slot is not None:
                self.frames["dropped"] += 1
            self._slot = (msg, compressed)
            self._cv.notify()

    def _work(self) -> None:
        while True:
            with self._cv:
                while not self._stopping and (self._slot is None or not self.active):
                    self._cv.wait(0.5)
                if self._stopping:
                    return
                msg, compressed = self._slot
                self._slot = None
            try:
                self.on_image(msg, compressed)
                self._bad_frames.landed()
            except Exception as exc:  # noqa: BLE001 - a bad frame is dropped; the camera's next one may be fine
                self.frames["bad"] += 1
                self._bad_frames.failed(f"dropped: {one_line(exc)}")
                self.bus.inputs.drop(f"{self._frames_topic}: {one_line(exc)}")

    def report_frames(self) -> None:
        """One line every drop_report_s: frames received, processed and dropped (newest wins)."""
        now = dict(self.frames)
        delta = {k: now[k] - self._reported[k] for k in now}
        self._reported = now
        self._silent = 0 if delta["received"] else self._silent + 1
        if self._silent == 1 and now["received"] and not self.bus.count_publishers(self._frames_topic):
            # frames came, and their publisher has gone: a recording that ended (the sensor says so), not a wrong topic
            self.log.info("no frame in the last %.0f s: the publisher of %s has gone (a recording that ended, or a "
                          "driver that stopped); frames are taken again when one publishes there",
                          self.params.drop_report_s, self._frames_from)
        elif self._silent == 1:   # once, until frames come: a driver elsewhere, or of another type, is silent in DDS
            compressed = self.params.image_transport == "compressed"
            self.log.warning("no frame in the last %.0f s: nothing arrives as %s (is the camera driver publishing "
                             "there, this type?%s)", self.params.drop_report_s, self._frames_from,
                             "" if compressed else " a CompressedImage topic needs image_transport:=compressed")
        if delta["received"]:
            self.log.info("frames in the last %.0f s: %d received, %d processed, %d dropped (newest wins), %d bad; "
                          "total %d dropped of %d", self.params.drop_report_s, delta["received"],
                          delta["processed"], delta["dropped"], delta["bad"], now["dropped"], now["received"])

    def status(self) -> Status:
        """A camera's frames (newest wins): received, processed, dropped for a newer one, bad."""
        if not getattr(self, "newest_wins", False):    # a managed node has none until configured
            return Status()
        return Status(values={f"frames_{k}": str(v) for k, v in self.frames.items()})

    def activate(self) -> None:
        super().activate()
        with self._cv:
            self._cv.notify()

    def close(self) -> None:
        """Stop the frame worker (on the way out and on cleanup); the extractor keeps no state."""
        worker = getattr(self, "_worker", None)
        if worker is not None:
            with self._cv:
                self._stopping = True
                self._cv.notify()
            worker.join(timeout=5.0)

    # every frame in order (a replay), and the shared path ---------------------------------------
    def on_truth(self, msg: Any) -> None:
        with self._join_lock:
            self.join.add_truth(stamp_ns(msg.header), msg)

    def _flush(self) -> None:
        with self._join_lock:
            self.join.flush()

    def on_imu(self, msg: Any) -> None:
        check_texts(msg)
        rate = float(msg.rate_hz)
        if not (np.isfinite(rate) and rate >= 0):      # 0: a sender that does not say its rate
            raise InputError(f"imu window at {rate:g} Hz: a rate must be a number from 0 (not said) up: dropped")
        if self.window_rate_hz and rate > 0 and abs(rate - self.window_rate_hz) > 1e-3 * self.window_rate_hz:
            # every window is wrong the same way: said once, then once a minute (not one line per window)
            self._bad_windows.failed(
                f"windows at {rate:g} Hz, the model {self.model.path.stem} was made on windows at "
                f"{self.window_rate_hz:g} Hz: dropped (a live IMU's sensor: imu_rate_hz is the model's rate, not the "
                f"IMU's; the readings are resampled to it at any rate the driver sends)")
            return
        self._bad_windows.landed()
        with self._join_lock:
            self.join.add_sample(stamp_ns(msg.header), msg.header, imu_window(msg, self.shape))

    def on_image(self, msg: Any, compressed: bool = False) -> None:
        """Decode (InputError → one line, dropped), preprocess and extract, then join the truth. The features keep the
        frame's header: a frame id the nodes after it would refuse (:func:`messages.check_texts`) is refused here."""
        check_texts(msg)
        pre = self.model.preprocessing
        image = compressed_image_of(msg, pre.size) if compressed else image_of(msg)
        # with latent_head the payload is (features, latent): one forward pass gives both
        feats = self.model.extract_one(image) if self.latent_pub is None else self.model.extract_one_with_latent(image)
        self.frames["processed"] += 1
        with self._join_lock:
            self.join.add_sample(stamp_ns(msg.header), msg.header, feats)

    def _emit(self, header: Any, feats: Any, truth: Any) -> None:
        latent = None
        if isinstance(feats, tuple):   # latent_head: the latents leave first, the learner pairs them by sample
            feats, latent = feats
        elif feats.ndim != 1:   # an IMU window: its features are taken here
            feats = self.model.extract_one(feats)
        fields = dict(header=header, extractor_hash=self.model.hash, sample_id=self.sample_id,
                      true_label=-1 if truth is None else int(truth.label),
                      labelled=bool(truth is not None and truth.learnable))
        if latent is not None:
            self.latent_pub.publish(self.Features(data=as_sequence(latent, "f"), **fields))
        self.pub.publish(self.Features(data=as_sequence(feats, "f"), **fields))
        self.sample_id += 1


#: the sample rate of the windows a model of a dataset was made on
DATASET_RATE_HZ = {"har": HAR_RATE_HZ, "cwru": CWRU_RATE_HZ}


def model_window_rate(path: Path) -> float | None:
    """The rate (Hz) of the windows the model at ``path`` was made on: its card's ``rate_hz``, else its dataset's;
    None when unknown (no card, another dataset): then any rate is taken."""
    card, _ = model_card_of(path)
    if card is None:
        return None
    rate = getattr(card, "rate_hz", None)
    if isinstance(rate, (int, float)) and not isinstance(rate, bool) and rate > 0:
        return float(rate)
    return DATASET_RATE_HZ.get(str(card.dataset or ""))


def imu_window(msg: Any, shape: tuple[int, ...]) -> np.ndarray:
    """An ImuWindow (samples x channels, row-major) as float32 (channels, samples); InputError otherwise."""
    channels, samples = shape
    n_ch = int(msg.n_channels)
    data = np.asarray(msg.data, np.float32)
    if n_ch != channels:
        raise InputError(f"imu window has {n_ch} channels, the extractor takes {channels} (x {samples} samples)")
    if data.size != channels * samples:
        raise InputError(f"imu window has {data.size} values, the extractor takes {channels} channels x "
                         f"{samples} samples = {channels * samples} (a live IMU's sensor: set imu_window to "
                         f"{samples})")
    if not np.isfinite(data).all():
        raise InputError("imu window contains NaN or inf")
    return np.ascontiguousarray(data.reshape(samples, channels).T)


def main(argv: list[str] | None = None) -> int:
    return run_node(Extractor, "extractor", argv)


if __name__ == "__main__":
    raise SystemExit(main())
