"""board node: the C core (``micro_ros_firmware/core``, host build ``libtinycl.so`` via ctypes) on
the graph, as a micro-ROS board would join it — a "board" learner without hardware.

Two inputs, chosen by ``input``:

* ``labeled`` (default): subscribes ``labeled`` (LabeledFeatures) exactly like the Python learner
  and learns every label with the C CWR* head (``lr``/``batch_size`` of the presets: the same head
  as the learner's ``supervised`` / ``tinyndc`` presets), predicting each sample before learning it;
* ``image``: like the firmware app (``micro_ros_firmware/app/src/main.c``): subscribes ``image``
  (sensor_msgs/Image, 28×28 mono8) and ``ground_truth``; the C int8 frozen model makes the
  features (published on ``features``), then the C TinyNDC step: a learnable ground-truth label is
  learned (head + centroids), otherwise the C clusterer's pseudo-label is (centroids follow the
  head's prediction, the paper's configuration).

Publishes ``predictions`` (Prediction) and ``head`` (Head, latched; same kind ``CWRStar``, linear
form and extractor hash as the Python learner's, so exporter, MQTT bridge and aggregator take it
unchanged). State (the C blobs, ``tinycl_nodes/export/c_state.py`` layout) is checkpointed in
``state_dir`` (``board.state``, ``storage.StateStore``) and reloaded on restart. If ``libtinycl.so`` is missing it is built with CMake
(``build: true``) or the node stops with one line saying how.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from .. import presets
from ..core import state as st
from ..core.errors import StateError, TinyclError
from ..interfaces import as_sequence, ns_to_time
from ..core.validation import check_label
from ..export import c_state
from ..extractor import FrozenExtractor, model_path
from ..firmware import DEFAULT_LIB, CWRStarC, Library, NearestCentroidC
from .messages import features_of, head_message, image_pixels, stamp_ns
from .runner import ImageQos, Node, StateParams, run_node
from .truth_join import TruthJoin

FW = Path(__file__).resolve().parents[2] / "micro_ros_firmware"
HOW = (f"run `make firmware-deps` (cmake, gcc), then `cmake -S {FW} -B {FW}/build && cmake --build {FW}/build -j2`, "
       "or point the `lib` parameter / TINYCL_LIB at a built libtinycl.so")


class BoardParams(StateParams):
    input: Literal["labeled", "image"] = Field(
        "labeled", description="labeled: learn LabeledFeatures like the learner | image: C features and the C "
                               "TinyNDC step on image + ground_truth")
    model: str | None = Field(None, description="extractor of the incoming features (labeled); default "
                                                "mnist_0to5_fp32. image: the C core's own int8 model (must match "
                                                "the library; default mnist_0to5_int8)")
    lib: str | None = Field(None, description="libtinycl.so (default: $TINYCL_LIB, else micro_ros_firmware/build)")
    build: bool = Field(True, description="build libtinycl.so with CMake when it is missing (lib and $TINYCL_LIB "
                                          "unset)")
    lr: float = Field(presets.CWR_PARAMS["lr"], gt=0, description="learning rate of the C CWR* head")
    batch_size: int = Field(presets.CWR_PARAMS["batch_size"], ge=1,
                            description="C CWR* head: samples learned between two consolidations")
    publish_every: int = Field(500, ge=1, description="publish the head after this many learned samples")
    publish_period_s: float = Field(1.0, gt=0, description="seconds between checks that publish the head if it "
                                                           "learned since it was last published")
    with_state: bool = Field(True, description="also send the full core state (Python format) in Head.state (the "
                                               "labeler's head replica follows it after a restart)")
    class_names: dict[int, str] = Field(default_factory=dict,
                                        description="class id → name of predictions and the head")
    truth_timeout_s: float = Field(1.0, gt=0, description="image: wait this long (seconds) for an image's ground "
                                                          "truth")
    expect_ground_truth: bool = Field(False, description="image: hold images until their ground truth arrives")
    image_qos: ImageQos = "sensor_data"


def ensure_library(path: str | None, build: bool, log: Any) -> Library:
    """Load libtinycl.so; the default one is (re)built with CMake first, incrementally (one build at a
    time; a no-op when up to date, so a library older than the C sources is never loaded), else one
    clear error."""
    target = Path(path or os.environ.get("TINYCL_LIB") or DEFAULT_LIB)
    own = build and not path and not os.environ.get("TINYCL_LIB")
    if not own and not target.is_file():
        raise TinyclError(f"board: libtinycl.so not found at {target}: {HOW}")
    if own:
        if shutil.which("cmake") is None or shutil.which("cc") is None and shutil.which("gcc") is None:
            if not target.is_file():
                raise TinyclError(f"board: libtinycl.so not found at {target} and cmake/gcc are missing: {HOW}")
            return Library(target)
        build_dir = target.parent
        build_dir.mkdir(parents=True, exist_ok=True)
        with open(build_dir / ".board-build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)        # two boards starting together build once
            import sys
            cmds = [["cmake", "--build", str(build_dir), "-j2", "--target", "tinycl"]]
            if not (build_dir / "CMakeCache.txt").is_file():
                log.info("building %s with CMake", target)
                cmds.insert(0, ["cmake", "-S", str(FW), "-B", str(build_dir), f"-DTINYCL_PYTHON={sys.executable}"])
            for cmd in cmds:
                p = subprocess.run(cmd, capture_output=True, text=True, check=False)
                if p.returncode != 0:
                    last = (p.stderr.strip() or p.stdout.strip()).splitlines()[-1:] or ["?"]
                    raise TinyclError(f"board: building libtinycl.so failed ({' '.join(cmd[:2])}: {last[0]}): {HOW}")
    return Library(target)


class Board(Node):
    Params = BoardParams

    def __init__(self, bus: Any, params: BoardParams) -> None:
        super().__init__(bus, params)
        # Subscribe before the slow part of the start (the CMake check/build of libtinycl.so, the
        # model, the state): nobody waits for this node's readers (the labeler waits for one reader
        # of `labeled`, usually the learner), and a reliable, volatile sample published before our
        # reader is matched is lost. Callbacks only run once the node spins, after __init__; until
        # then samples queue in the (keep-all) readers.
        if params.input == "labeled":
            bus.create_subscription("labeled", "LabeledFeatures", self.on_labeled, "reliable")
        else:
            self.join = TruthJoin(self._step, params.truth_timeout_s, params.expect_ground_truth, self.log)
            bus.create_subscription("ground_truth", "GroundTruth", self.on_truth, "reliable")
            bus.create_subscription("image", "sensor_msgs/msg/Image", self.on_image, params.image_qos)
        self.lib = ensure_library(params.lib, params.build, self.log)
        if params.input == "image":
            model = params.model or "mnist_0to5_int8"
        else:
            model = params.model or "mnist_0to5_fp32"
        ext = FrozenExtractor(model_path(model))
        self.hash, self.n_features, self.bound = ext.hash, ext.n_features, ext.feature_bound
        if self.n_features != self.lib.n_features:
            raise TinyclError(f"board: model {model} has {self.n_features} features, {self.lib.path.name} "
                              f"was built for {self.lib.n_features}")
        if params.input == "image" and self.hash != self.lib.model_sha256:
            raise TinyclError(f"board: input image runs the C core's own model ({self.lib.model_sha256[:12]}), "
                              f"not {model} ({self.hash[:12]})")
        self.state = self.open_state("board", self.state_dicts)
        self.load_state()
        self.Prediction = bus.msg("Prediction")
        self.HeadMsg, self.ClassInfo = bus.msg("Head"), bus.msg("ClassInfo")
        self.pred_pub = bus.create_publisher("predictions", self.Prediction, "reliable")
        self.head_pub = bus.create_publisher("head", self.HeadMsg, "latched")
        self.updates_since_publish = 0
        self.sample_id = 0
        if params.input == "image":
            self.Features = bus.msg("Features")
            self.feat_pub = bus.create_publisher("features", self.Features, "reliable")
            bus.create_timer(params.truth_timeout_s / 2, self.join.flush)
        bus.create_timer(params.publish_period_s, self._maybe_publish)
        self.log.info("C core %s (ABI %d, %d features, ≤ %d classes), input %s, extractor %s…", self.lib.path,
                      self.lib.lib.tinycl_abi_version(), self.lib.n_features, self.lib.max_classes, params.input,
                      self.hash[:12])

    # --- learning -----------------------------------------------------------------------------
    def _predict(self, x: np.ndarray) -> tuple[int, float]:
        """The C head's prediction and its softmax confidence (-1, 0 before any class)."""
        y = self.head.predict_one(x)
        if y is None:
            return -1, 0.0
        s = self.head.scores(x).astype(np.float64)
        p = np.exp(s - s.max())
        return int(y), float(p.max() / p.sum())

    def on_labeled(self, msg: Any) -> None:
        x = features_of(msg.features, self.n_features, self.hash, self.bound)
        label = int(msg.label)
        if label != -1:
            check_label(label)
        cls, conf = self._predict(x)
        self._publish_prediction(msg.features.header, msg.features.sample_id, cls, conf)
        if label >= 0:
            self.head.learn_one(x, label)
            self.last_label_ns = stamp_ns(msg.header)
            self.updates_since_publish += 1
            self.state.learned()
        if self.updates_since_publish >= self.params.publish_every:
            self._maybe_publish()

    def on_truth(self, msg: Any) -> None:
        check_label(int(msg.label), "ground truth label")
        self.join.add_truth(stamp_ns(msg.header), msg)

    def on_image(self, msg: Any) -> None:
        self.join.add_sample(stamp_ns(msg.header), msg.header, image_pixels(msg, (28, 28)))

    def _step(self, header: Any, px: np.ndarray, truth: Any) -> None:
        """The firmware app's frame step: C features → predict → learn (label or pseudo-label)."""
        x = self.lib.features(px)
        label = int(truth.label) if truth is not None and truth.learnable else -1
        sid = self.sample_id
        self.sample_id = (self.sample_id + 1) % 2**32
        self.feat_pub.publish(self.Features(header=header, data=as_sequence(x, "f"), extractor_hash=self.hash,
                                            sample_id=sid,
                                            true_label=int(truth.label) if truth is not None else -1,
                                            labelled=label >= 0))
        cls, conf = self._predict(x)
        self._publish_prediction(header, sid, cls, conf)
        if label >= 0:                                   # tinycl_ndc_step with a label
            self.head.learn_one(x, label)
            self.ncm.update(x, label)
        elif self.ncm.n_classes():                        # pseudo-label; centroids follow the head
            pseudo, _ = self.ncm.pseudo_label(x)
            self.head.learn_one(x, pseudo)
            if cls >= 0:
                self.ncm.update(x, cls)
        else:
            return
        self.last_label_ns = stamp_ns(header)
        self.updates_since_publish += 1
        self.state.learned()
        if self.updates_since_publish >= self.params.publish_every:
            self._maybe_publish()

    def _publish_prediction(self, header: Any, sample_id: int, cls: int, conf: float) -> None:
        self.pred_pub.publish(self.Prediction(header=header, sample_id=sample_id, class_id=cls,
                                              class_name=self.params.class_names.get(cls, str(cls)), confidence=conf))

    # --- head and state -----------------------------------------------------------------------
    def _maybe_publish(self) -> None:
        if self.updates_since_publish:
            self.publish_head()

    def python_head(self):
        """The C head as the Python CWRStar (through its C blob): what the Head message is made from."""
        return c_state.cwr_from_bytes(self.head.to_bytes())

    def publish_head(self) -> None:
        head = self.python_head()
        if not head.classes:
            return
        self.version += 1
        self.state.save()    # first saved, then published: a version number is never used twice
        # stamped with the last label learned, as the learner's (the labeler's replica follows it)
        stamp = ns_to_time(self.last_label_ns, self.bus.msg("builtin_interfaces/msg/Time"))
        header = self.bus.msg("std_msgs/msg/Header")(stamp=stamp, frame_id="")
        self.head_pub.publish(head_message(self.HeadMsg, self.ClassInfo, head, self.version, header,
                                           self.params.class_names, self.params.with_state))
        self.updates_since_publish = 0

    def load_state(self) -> None:
        """The saved C state, or a fresh one (no file, or a bad one: moved aside)."""
        self._fresh()
        if self.state.load(self._restore):
            self.log.info("restored C head (%d classes) from %s, head version %d, %d samples", self.head.n_classes,
                          self.state.path, self.version, self.python_head().n_seen)
        else:
            self._fresh()

    def _fresh(self) -> None:
        self.head = CWRStarC(self.lib, lr=self.params.lr, batch_size=self.params.batch_size)
        self.head.set_extractor(self.hash)
        self.ncm = NearestCentroidC(self.lib) if self.params.input == "image" else None
        self.version, self.last_label_ns = 0, 0

    def state_dicts(self) -> dict[str, dict[str, Any]]:
        """The C blobs (``export/c_state.py`` layout) as uint8 arrays, and the published version."""
        arrays = {"head": np.frombuffer(self.head.to_bytes(), np.uint8)}
        if self.ncm is not None:
            arrays["centroids"] = np.frombuffer(self.ncm.to_bytes(), np.uint8)
        return {"board": st.make_state("board", 1, {"input": self.params.input}, arrays,
                                       {"published_version": self.version, "last_label_ns": self.last_label_ns})}

    def _restore(self, saved: dict[str, dict[str, Any]]) -> None:
        state = st.check_state(saved.get("board"), "board", 1, ("head",) + (("centroids",) if self.ncm else ()))
        self.head.load_bytes(np.asarray(state["arrays"]["head"], np.uint8).tobytes())
        if self.ncm is not None:
            self.ncm.load_bytes(np.asarray(state["arrays"]["centroids"], np.uint8).tobytes())
        version = state["meta"].get("published_version", 0)
        if isinstance(version, bool) or not isinstance(version, int) or version < 0:
            raise StateError(f"state: published_version must be a non-negative int, got {version!r}")
        self.version = version
        self.last_label_ns = int(state["meta"].get("last_label_ns", 0))

    def close(self) -> None:
        if self.updates_since_publish:
            self.publish_head()
        self.state.save()


def main(argv: list[str] | None = None) -> int:
    return run_node(Board, "board", argv)


if __name__ == "__main__":
    raise SystemExit(main())
