"""sensor node: publishes samples — a dataset replayed at a rate, a rosbag2/MCAP file, or a camera.

Topics: ``image`` (sensor_msgs/Image: mono8 for grey images, rgb8 for colour, a camera's frames
in its own size and encoding, bgr8 from OpenCV, as a driver sends them) and, for a labelled
dataset, ``ground_truth`` (GroundTruth, same stamp as the image).

``source: folder`` replays a user's image folder (``folder``: ``root/<class name>/*.png|jpg``):
``labels_per_class`` labelled images per class, then the other images in a random order (at
most ``stream_length``). ``source: rosbag`` replays a bag's ``sensor_msgs/Image`` or
``CompressedImage`` topic, decoded. ``source: camera`` reads ``camera_device`` through OpenCV (a
device, or a network camera's URL) until stopped; a camera that stops delivering frames (unplugged,
a stream cut, a network camera's stream silent for ``CAMERA_TIMEOUT_S``) is reopened every second
until it comes back, said once, then once a minute, and once when it is back; a video file plays as
the camera it was recorded from, and ends. A recording (a bag, a video file) plays at the
pace it was recorded, as ``ros2 bag play`` does (``rate_hz`` sets another): best-effort frames sent all at once would
mostly be lost. Replaying MNIST
follows the TinyNDC protocol: first the k labelled training images per class (``learnable`` ground
truth), then the test stream, in the same random order as ``tinycl experiment tinyndc`` for the
same seed.

``source: imu`` windows a live IMU: a driver's ``sensor_msgs/Imu`` readings on ``imu_topic`` (acceleration and angular
velocity, in m/s² and rad/s), resampled to ``imu_rate_hz`` and cut into windows of ``imu_window`` samples, a new one
every ``imu_step`` (the defaults: the shipped HAR model's, ``datasets.har``), published as they fill (``imu_windows``);
no ground truth. A driver silent for ``IMU_TIMEOUT_S`` is said once, then once a minute.

IMU and vibration windows (``source: har`` | ``cwru``) go on ``imu`` (ImuWindow, samples x channels
row-major, with the dataset's rate and channel names) with the same ``ground_truth``: first
``labels_per_class`` labelled windows per class (HAR: of ``har_labelled_subjects``; CWRU: of the
training split), then the stream (HAR: the windows of ``har_stream_subjects`` in time order, a new
user; CWRU: the test split in a random order), at most ``stream_length``. ``labelled_classes``
keeps the labelled part to those classes (the others arrive unannounced: novel classes).
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from pathlib import Path
from typing import Any, Iterator, Literal, NamedTuple

import numpy as np
from pydantic import Field, field_validator, model_validator

from ..bus.qos import IMU_READINGS
from ..core.errors import InputError, TinyclError
from ..datasets import har
from ..graphs import LIVE_SOURCES
from ..imu_windows import ImuWindower, Window, reading_of
from ..storage import RepeatedFailure, one_line
from ..interfaces import as_sequence
from .diagnostics import Status
from .runner import Node, NodeParams, run_node


#: seconds between attempts to reopen a camera that stopped delivering frames
CAMERA_REOPEN_S = 1.0
#: a network camera's stream that sends nothing this long has stopped (opening it, too, takes at most this long)
CAMERA_TIMEOUT_S = 5.0
#: a publisher that fell behind its pace sends at most this many seconds of backlog at once, then goes on from now
MAX_BACKLOG_S = 1.0
#: an IMU driver that sends no reading this long is said to be silent (it sends 50–1,000 a second)
IMU_TIMEOUT_S = 5.0
#: at most this many IMU windows wait for the graph (newest win): about 30 s of the HAR model's
IMU_BACKLOG = 64


class Sample(NamedTuple):
    """One sample of a source. ``at_s``: when the source recorded it, in seconds from its first sample (a bag's, a
    video file's); None where the source has no pace of its own."""
    pixels: np.ndarray
    label: int | None
    learnable: bool
    at_s: float | None = None
    stamp_ns: int | None = None    #: the time the sample was taken (an IMU window's first reading, the driver's clock)


class Pace:
    """When each sample is due: every ``1 / rate_hz`` s if a rate is set, else at the times its source recorded, else
    at once (None). The rate can change between samples (``rate_hz`` is runtime-mutable)."""

    def __init__(self) -> None:
        self._next: float | None = None     # fixed rate: when the next sample is due
        self._origin: float | None = None   # recorded times: the clock time of the source's time 0

    def due(self, rate_hz: float, at_s: float | None, now: float) -> float | None:
        if rate_hz:
            self._origin = None
            due = now if self._next is None else self._next
            self._next = max(due + 1.0 / rate_hz, now - MAX_BACKLOG_S)
            return due
        self._next = None
        if at_s is None:
            return None
        if self._origin is None:
            self._origin = now - at_s
        self._origin += max(0.0, now - MAX_BACKLOG_S - (self._origin + at_s))   # too far behind: go on from now
        return self._origin + at_s


class SensorParams(NodeParams):
    runtime_mutable = frozenset({"rate_hz"})
    source: Literal["mnist", "rosbag", "camera", "imu", "har", "cwru", "folder"] = Field(
        "mnist", description="what is published: an MNIST replay, a rosbag2/MCAP file, a camera, a live IMU's "
                             "windows, HAR IMU windows, CWRU vibration windows or an image folder")
    folder: str | None = Field(None, description="folder source: root/<class name>/*.png|jpg (the torchvision "
                                                 "ImageFolder layout)")
    data_dir: str | None = Field(None, description="dataset folder (default: $TINYCL_DATA or ../shared/data)")
    seed: int = Field(0, ge=0, description="seed of the replay's random choices and order (MNIST: the same order "
                                           "as tinycl experiment tinyndc for the same seed)")
    labels_per_class: int = Field(10, ge=1, le=1000, description="labelled samples per class replayed before "
                                                                 "the stream (as learnable ground truth)")
    stream_length: int = Field(8000, ge=1, le=10000, description="at most this many stream samples after the "
                                                                 "labelled ones (dataset sources)")
    stream_classes: list[int] | None = Field(None, description="mnist: replay only these classes of the stream "
                                                               "(a fleet device); the labelled init keeps all ten")
    labelled_classes: list[int] | None = Field(None, description="labelled samples of these classes only "
                                                                 "(others: novel); None: every class")
    har_device: Literal["sp", "sw"] = Field("sp", description="har: smartphone (sp) or smartwatch (sw)")
    har_labelled_subjects: list[int] = Field(default_factory=lambda: [1],
                                             description="har: users the labels come from")
    har_stream_subjects: list[int] = Field(default_factory=lambda: [13], description="har: the new user streamed")
    rate_hz: float = Field(0.0, ge=0.0, le=100_000.0,
                           description="samples per second; 0 = a recording's own pace (a bag's, a video file's), "
                                       "else as fast as the reliable graph takes them")
    qos: Literal["reliable", "sensor_data"] = Field(
        "sensor_data", description="QoS of image / imu: a camera may drop (sensor_data); a replay sets reliable")
    wait_for_subscribers: int = Field(1, ge=0, description="readers of image (imu for har/cwru) to wait for "
                                                           "before starting")
    wait_for_truth_subscribers: int = Field(1, ge=0, description="readers of ground_truth (extractor, monitor…) "
                                                                 "to wait for before a dataset replay starts")
    wait_timeout_s: float = Field(30.0, gt=0, description="stop with an error if the readers are not there after "
                                                          "this many seconds")
    start_delay_s: float = Field(0.0, ge=0, description="seconds to wait once the readers are there, before the "
                                                        "first sample")
    exit_when_done: bool = Field(True, description="exit when the source is exhausted (after linger_s at most); "
                                                   "false: keep running")
    linger_s: float = Field(2.0, ge=0, description="at most this many seconds to keep the writers alive at the end "
                                                   "so readers get the last samples: less once every reliable "
                                                   "reader has acknowledged them all (best-effort: all of it)")
    bag: str | None = Field(None, description="rosbag source: a rosbag2 folder or .mcap file")
    bag_topic: str = Field("/camera/image_raw", description="rosbag source: the sensor_msgs/Image or "
                                                            "CompressedImage topic replayed")
    camera_device: int | str = Field(0, description="camera source: OpenCV device index, or a device path or "
                                                    "video URL")
    imu_topic: str = Field("imu_raw", description="imu source: the driver's sensor_msgs/Imu topic (relative: in "
                                                 "the namespace)", min_length=1)
    imu_rate_hz: float = Field(har.RATE_HZ, gt=0, le=100_000.0, description="imu source: the rate the readings are "
                                                                        "resampled to (the model's)")
    imu_window: int = Field(har.WINDOW, ge=2, le=100_000, description="imu source: samples per window (the model's)")
    imu_step: int = Field(har.STEP, ge=1, le=100_000, description="imu source: a new window every this many samples "
                                                              "(at most imu_window)")
    imu_max_gap_s: float = Field(0.25, gt=0, le=60.0, description="imu source: a longer gap between readings (or a "
                                                                  "time that goes back) drops the window being filled")
    camera_invert: bool = Field(False, description="camera source: invert the frame (a digit written dark on "
                                                   "paper looks like MNIST's light on dark)")

    @model_validator(mode="after")
    def _a_step_within_the_window(self) -> "SensorParams":
        if self.imu_step > self.imu_window:
            raise ValueError(f"imu_step {self.imu_step} is over imu_window {self.imu_window}: samples between windows "
                             f"would be lost")
        return self

    @field_validator("camera_device")
    @classmethod
    def _a_camera(cls, v: int | str) -> int | str:
        """OpenCV takes -1 for "any camera" and crashes (SIGSEGV, OpenCV 5.1) where there is none; "" opens nothing."""
        if (isinstance(v, int) and v < 0) or (isinstance(v, str) and not v.strip()):
            raise ValueError("not a camera: give an index 0, 1, …, a device path or a video URL")
        return v


class Sensor(Node):
    Params = SensorParams

    def __init__(self, bus: Any, params: SensorParams) -> None:
        super().__init__(bus, params)
        self.Image = bus.msg("sensor_msgs/msg/Image")
        self.Header = bus.msg("std_msgs/msg/Header")
        self.GroundTruth = bus.msg("GroundTruth")
        self.imu = params.source in ("imu", "har", "cwru")
        self.class_names: tuple[str, ...] = ()
        # only the topics this source sends (`ros2 node info` of a live IMU's sensor listed image and ground_truth)
        if self.imu:
            self.ImuWindow = bus.msg("ImuWindow")
            self.imu_pub = bus.create_publisher("imu", self.ImuWindow, params.qos)
            self.channel_names, self.rate_hz = [], 0.0
        else:
            self.image_pub = bus.create_publisher("image", self.Image, params.qos)
        self.labelled = params.source not in LIVE_SOURCES      # a dataset: ground truth with each sample
        if self.labelled:
            self.truth_pub = bus.create_publisher("ground_truth", self.GroundTruth, "reliable")
        self._last_ns = 0
        self.published = 0

    # --- sources ---------------------------------------------------------------------------
    def _imu(self) -> Iterator[Sample]:
        p = self.params
        topic = self.bus.topic_name(p.imu_topic)
        own = {self.bus.topic_name(t): t for t in ("imu", "image", "ground_truth")}
        if topic in own:
            raise TinyclError(f"sensor: imu_topic {p.imu_topic!r} is {topic}, the sensor's own {own[topic]!r} topic "
                              f"(the windows it sends): give the driver's topic in full (e.g. imu_topic:=/imu/data)")
        windows = ImuWindower(p.imu_rate_hz, p.imu_window, p.imu_step, p.imu_max_gap_s)
        ready: deque[Window] = deque(maxlen=IMU_BACKLOG)
        refused = RepeatedFailure(f"take the IMU readings on {topic}", self.log, attempts="readings", intermittent=True)
        silent = RepeatedFailure(f"hear the IMU on {topic}", self.log, attempts="")      # a silence: its time
        heard, gap_said = [time.monotonic()], [-1e9]

        def on_reading(msg: Any) -> None:
            heard[0] = time.monotonic()
            silent.landed()
            try:
                t_ns, values = reading_of(msg, self.bus.now_ns())
            except InputError as exc:
                refused.failed(str(exc))
                return
            refused.landed()
            restarts = windows.restarts
            ready.extend(windows.add(t_ns, values))
            if windows.restarts != restarts and heard[0] - gap_said[0] >= 60.0:   # once a minute at most
                gap_said[0] = heard[0]
                self.log.warning("IMU on %s: %s: the window being filled was dropped (%d such restarts so far)",
                                 topic, windows.restart_reason, windows.restarts)

        self.bus.create_subscription(p.imu_topic, "sensor_msgs/msg/Imu", on_reading, IMU_READINGS)
        self.channel_names, self.rate_hz = list(har.CHANNELS), p.imu_rate_hz
        self.log.info("IMU on %s: windows of %d samples at %g Hz, a new one every %d", topic, p.imu_window,
                      p.imu_rate_hz, p.imu_step)
        while self.bus.ok():
            self.bus.spin_once(0.05)
            while ready:
                w = ready.popleft()
                yield Sample(w.values, None, False, stamp_ns=w.start_ns)
            if time.monotonic() - heard[0] > IMU_TIMEOUT_S:
                silent.failed(f"no reading for {IMU_TIMEOUT_S:g} s (is the driver running, and is this its topic? "
                              f"imu_topic sets it)", since=heard[0])

    def _mnist(self) -> Iterator[Sample]:
        from ..datasets import load_mnist
        from ..experiments.tinyndc import split_indices

        p = self.params
        Xtr, ytr = load_mnist("train", p.data_dir)
        Xte, yte = load_mnist("test", p.data_dir)
        init, stream, _ = split_indices(p.seed, ytr, yte, p.stream_length, p.labels_per_class)
        if p.stream_classes is not None:
            stream = stream[np.isin(yte[stream], p.stream_classes)]
        self.log.info("MNIST replay: %d labelled + %d stream samples (seed %d)", init.size, stream.size, p.seed)
        for i in init:
            if p.labelled_classes is None or int(ytr[i]) in p.labelled_classes:
                yield Sample(Xtr[i], int(ytr[i]), True)
        for i in stream:
            yield Sample(Xte[i], int(yte[i]), False)

    def _labelled_first(self, X: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> Iterator[Sample]:
        p = self.params
        for c in np.unique(y):
            if p.labelled_classes is not None and int(c) not in p.labelled_classes:
                continue
            idx = np.flatnonzero(y == c)
            for i in np.sort(rng.choice(idx, min(p.labels_per_class, idx.size), replace=False)):
                yield Sample(X[i], int(c), True)

    def _har(self) -> Iterator[Sample]:
        p = self.params
        rng = np.random.default_rng(p.seed)
        lab = har.load_har(p.data_dir, device=p.har_device, subjects=p.har_labelled_subjects)
        new = har.load_har(p.data_dir, device=p.har_device, subjects=p.har_stream_subjects)
        self.class_names, self.channel_names, self.rate_hz = har.CLASSES, list(har.CHANNELS), har.RATE_HZ
        self.log.info("HAR replay (%s): labelled windows of subjects %s, then %d windows of subjects %s",
                      p.har_device, p.har_labelled_subjects, min(len(new), p.stream_length), p.har_stream_subjects)
        yield from self._labelled_first(lab.X, lab.y, rng)
        for i in range(min(len(new), p.stream_length)):
            yield Sample(new.X[i], int(new.y[i]), False)

    def _cwru(self) -> Iterator[Sample]:
        from ..datasets.cwru import CLASSES, RATE_HZ, load_cwru

        p = self.params
        rng = np.random.default_rng(p.seed)
        train, test = load_cwru(p.data_dir, split="train"), load_cwru(p.data_dir, split="test")
        self.class_names, self.channel_names, self.rate_hz = CLASSES, ["drive_end_g"], RATE_HZ
        order = rng.permutation(len(test))[:p.stream_length]
        self.log.info("CWRU replay: labelled training windows, then %d test windows", order.size)
        yield from self._labelled_first(train.X, train.y, rng)
        for i in order:
            yield Sample(test.X[i], int(test.y[i]), False)

    def _rosbag(self) -> Iterator[Sample]:
        from rosbags.highlevel import AnyReader
        from rosbags.typesys import Stores, get_typestore

        from ..images import compressed_image_of, image_of

        path = self._bag_path()
        store = get_typestore(Stores.ROS2_HUMBLE)
        try:
            reader = AnyReader([path], default_typestore=store)
            reader.open()
        except Exception as exc:  # noqa: BLE001 - rosbags raises several types for a file it cannot read
            raise TinyclError(f"sensor: cannot read rosbag {path} (a rosbag2 folder with metadata.yaml, or .mcap): "
                              f"{one_line(exc)}") from None
        try:
            conns = [c for c in reader.connections if c.topic == self.params.bag_topic]
            if not conns:
                topics = ", ".join(sorted({c.topic for c in reader.connections}))
                raise TinyclError(f"sensor: topic {self.params.bag_topic} not in {path} (has: {topics})")
            kinds = {c.msgtype for c in conns}
            if not kinds <= {"sensor_msgs/msg/Image", "sensor_msgs/msg/CompressedImage"}:
                raise TinyclError(f"sensor: {self.params.bag_topic} in {path} holds {', '.join(kinds)}, not "
                                  f"sensor_msgs/Image or CompressedImage")
            if not self.params.rate_hz:
                self.log.info("rosbag %s: %d messages on %s, played at the pace they were recorded (rate_hz sets "
                              "another)", path, sum(c.msgcount for c in conns), self.params.bag_topic)
            first_ns = None
            for conn, ns, raw in reader.messages(connections=conns):   # ns: when the recorder received it
                first_ns = ns if first_ns is None else first_ns
                img = reader.deserialize(raw, conn.msgtype)
                try:
                    pixels = image_of(img) if conn.msgtype.endswith("/Image") else compressed_image_of(img)
                except TinyclError as exc:
                    self.log.error("bag message dropped: %s", exc)
                    continue
                yield Sample(pixels, None, False, (ns - first_ns) / 1e9)
        finally:
            reader.close()

    def _folder(self) -> Iterator[Sample]:
        from ..datasets import load_image_folder, read_images

        p = self.params
        ds = load_image_folder(p.folder)
        self.class_names = ds.classes
        rng = np.random.default_rng(p.seed)
        labelled = [i for c in range(len(ds.classes)) if p.labelled_classes is None or c in p.labelled_classes
                    for i in np.sort(rng.choice(np.flatnonzero(ds.y == c), min(p.labels_per_class,
                                                int(np.sum(ds.y == c))), replace=False))]
        rest = rng.permutation(np.setdiff1d(np.arange(len(ds)), labelled))[:p.stream_length]
        self.log.info("image folder %s: %d classes, %d labelled + %d stream images", ds.name, len(ds.classes),
                      len(labelled), rest.size)
        for part, learnable in ((np.asarray(labelled, np.int64), True), (rest, False)):
            for i in part:
                images, kept = read_images(ds, [i])   # an unreadable file: one line, skipped
                if kept.size:
                    yield Sample(images[0], int(ds.y[i]), learnable)

    def _bag_path(self) -> Path:
        if not self.params.bag:
            raise TinyclError("sensor: source 'rosbag' needs the parameter bag (a rosbag2 folder or .mcap file)")
        path = Path(self.params.bag)
        if not path.exists():
            raise TinyclError(f"sensor: rosbag not found: {path}")
        return path

    def _camera(self) -> Iterator[Sample]:
        try:
            import cv2
        except ImportError:
            raise TinyclError("sensor: source 'camera' needs OpenCV (pip install opencv-python-headless)") from None
        device = self.params.camera_device
        cap = _open_camera(cv2, device)
        if not cap.isOpened():   # at the start: a wrong device, said once, and the launch ends
            raise TinyclError(f"sensor: camera {device!r} cannot be opened: {_why_not_opened(device)}")
        is_file = isinstance(device, str) and Path(device).is_file()
        fps = float(cap.get(cv2.CAP_PROP_FPS)) if is_file else 0.0   # a recording plays as the camera it came from
        if fps > 0 and not self.params.rate_hz:
            self.log.info("camera %r is a video file: played at its own %g frames/s (rate_hz sets another)",
                          device, fps)
        lost = RepeatedFailure(f"read camera {device!r}", self.log, attempts="reopenings")
        try:
            for index in itertools.count():
                if not self.bus.ok():
                    return
                ok, frame = cap.read()
                if ok:
                    lost.landed()
                    yield Sample(255 - frame if self.params.camera_invert else frame, None, False,   # BGR, native size
                                 index / fps if fps > 0 else None)
                    continue
                if is_file:
                    return   # a video file played as a camera: its end is the end of the source
                # a camera unplugged, a network camera's stream cut: the robot's graph goes on, the camera is reopened
                lost.failed(f"it stopped delivering frames: reopening it every {CAMERA_REOPEN_S:g} s")
                cap.release()
                self.bus.spin(CAMERA_REOPEN_S)
                cap = _open_camera(cv2, device)
        finally:
            cap.release()

    # --- publishing ------------------------------------------------------------------------
    def _stamp(self, at_ns: int | None = None) -> Any:
        """The sample's header: stamped ``at_ns`` (when it was taken: an IMU window's first reading, on the driver's
        clock, which is the simulated one under use_sim_time), else now; strictly increasing all the same."""
        ns = max(time.time_ns() if at_ns is None else int(at_ns), self._last_ns + 1)  # stamps identify samples
        self._last_ns = ns
        return self.Header(stamp=self.bus.msg("builtin_interfaces/msg/Time")(sec=ns // 1_000_000_000,
                                                                          nanosec=ns % 1_000_000_000),
                           frame_id="camera")

    def publish(self, pixels: np.ndarray, label: int | None, learnable: bool, stamp_ns: int | None = None) -> None:
        header = self._stamp(stamp_ns)
        if label is not None:
            name = self.class_names[label] if 0 <= label < len(self.class_names) else str(label)
            self.truth_pub.publish(self.GroundTruth(header=header, label=label, class_name=name,
                                                    learnable=learnable))
        if self.imu:  # (channels, samples) → row-major samples x channels
            header.frame_id = "imu"
            self.imu_pub.publish(self.ImuWindow(header=header, data=as_sequence(pixels.T, "f"),
                                                n_channels=pixels.shape[0], rate_hz=self.rate_hz,
                                                channel_names=self.channel_names))
            self.published += 1
            return
        h, w = pixels.shape[:2]
        channels = 1 if pixels.ndim == 2 else pixels.shape[2]
        encoding = "mono8" if channels == 1 else ("bgr8" if self.params.source == "camera" else "rgb8")
        self.image_pub.publish(self.Image(header=header, height=h, width=w, encoding=encoding, is_bigendian=0,
                                          step=w * channels, data=as_sequence(np.ascontiguousarray(pixels), "B")))
        self.published += 1

    def status(self) -> Status:
        """Samples sent so far."""
        return Status(values={"samples_published": str(self.published)})

    def _wait_for_readers(self) -> None:
        p = self.params
        end = time.monotonic() + p.wait_timeout_s
        data_pub = self.imu_pub if self.imu else self.image_pub
        while self.bus.ok() and (data_pub.get_subscription_count() < p.wait_for_subscribers
                                 or (self.labelled and self.truth_pub.get_subscription_count()
                                     < p.wait_for_truth_subscribers)):
            if time.monotonic() > end:
                raise TinyclError(f"sensor: not enough subscribers on {'imu' if self.imu else 'image'}/ground_truth "
                                  f"after {p.wait_timeout_s:.0f} s")
            self.bus.spin_once(0.05)
        time.sleep(p.start_delay_s)

    def run(self) -> None:
        p = self.params
        source = {"mnist": self._mnist, "rosbag": self._rosbag, "camera": self._camera, "imu": self._imu,
                  "har": self._har, "cwru": self._cwru, "folder": self._folder}[p.source]()
        # open the source now (dataset, bag, camera): a bad one is one line at start-up, not after the wait
        first = next(source, None)
        if first is not None:
            source = itertools.chain([first], source)
        self._wait_for_readers()
        pace = Pace()
        for sample in source:
            if not self.bus.ok():
                break
            if (due := pace.due(self.params.rate_hz, sample.at_s, time.perf_counter())) is not None:
                while (delay := due - time.perf_counter()) > 0 and self.bus.ok():   # serve callbacks meanwhile
                    self.bus.spin_once(delay)
            elif self.published % 256 == 0:
                self.bus.spin_once(0.0)
            self.publish(sample.pixels, sample.label, sample.learnable, sample.stamp_ns)
        self.log.info("published %d samples", self.published)
        if p.exit_when_done:
            self._linger(p.linger_s)
        else:
            self.bus.spin()

    def _linger(self, limit_s: float) -> None:
        """Keep the writers until every reader holds all they wrote, ``limit_s`` at most. It was ``limit_s`` always:
        every replay, and every graph waiting for its end (the metrics node), ended that much late. A best-effort
        writer's readers never say (they do not acknowledge): it lingers the whole time."""
        end = time.monotonic() + limit_s
        writers = [self.imu_pub if self.imu else self.image_pub] + ([self.truth_pub] if self.labelled else [])
        while self.bus.ok() and (left := end - time.monotonic()) > 0:
            if all(w.all_acked() for w in writers):
                return
            self.bus.spin_once(min(left, 0.02))


def _why_not_opened(device: int | str) -> str:
    """What a user can do about a camera that cannot be opened at the start (it said only "cannot be opened", after
    OpenCV's own warnings: whether the device was missing, busy or a wrong path was left to guess)."""
    other = "give another camera_device (tinycl launch: --camera): an index, a device path or a video URL"
    index = device if isinstance(device, int) else int(device) if device.isdigit() else None
    if index is not None:
        path, there = Path(f"/dev/video{index}"), sorted(str(p) for p in Path("/dev").glob("video*"))
        if not path.exists():
            return f"no {path} on this machine ({', '.join(there) or 'no /dev/video* at all'}): {other}"
        return f"{path} is there, but OpenCV cannot read it (another program holding it, or not a capture device)"
    if "://" in device:
        return "no video stream at this URL within the time allowed (the camera reachable? the stream's path?)"
    if not Path(device).exists():
        return f"no such file: {other}"
    return f"OpenCV reads it neither as a camera nor as a video file: {other}"


#: OpenCV's log level for nothing at all (cv2.utils.logging.LOG_LEVEL_SILENT; OpenCV 4 has no name for it)
OPENCV_SILENT = 0


def _open_camera(cv2: Any, device: int | str) -> Any:
    """OpenCV's capture of ``device``. A network camera's URL (FFmpeg) gets time limits: a stream that stalls with its
    connection open would otherwise block a read for as long as it stalls (no frames, no reopening meanwhile).

    OpenCV's own log is silenced while it tries: a device that cannot be opened printed two warnings of its backends
    (V4L2's "can't open camera by index", FFmpeg's "should be configured with libavdevice") before our one line, which
    says what is wrong (``_why_not_opened``); and a camera being reopened every second repeated them each time."""
    log = getattr(getattr(cv2, "utils", None), "logging", None)   # OpenCV 5's; 4's (4.11: ROS 2 kit's) is cv2's own
    get_level, set_level = (log.getLogLevel, log.setLogLevel) if log is not None else (cv2.getLogLevel,
                                                                                        cv2.setLogLevel)
    level = get_level()
    set_level(OPENCV_SILENT)
    try:
        if isinstance(device, str) and "://" in device:
            limit_ms = int(CAMERA_TIMEOUT_S * 1000)
            return cv2.VideoCapture(device, cv2.CAP_FFMPEG, [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, limit_ms,
                                                             cv2.CAP_PROP_READ_TIMEOUT_MSEC, limit_ms])
        return cv2.VideoCapture(device)
    finally:
        set_level(level)


def main(argv: list[str] | None = None) -> int:
    return run_node(Sensor, "sensor", argv)


if __name__ == "__main__":
    raise SystemExit(main())
