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
``state_dir`` (``board.state``, ``storage.StateStore``) and reloaded on restart; what it learned since the last
checkpoint is in its journal (``journal.py``: each labelled sample, or each frame it learned from) and learned again by
the C core after a restart, so a kill -9 loses at most the one message being handled. (A board keeps only its flash
checkpoints: this node is the host's C core, and keeps what a host can.) If ``libtinycl.so`` is missing it is built
with CMake (``build: true``) or the node stops with one line saying how.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from .. import presets
from ..core import state as st
from ..core.errors import StateError, TinyclError
from ..interfaces import as_sequence
from ..core.validation import check_label
from ..export import c_state
from ..firmware import DEFAULT_LIB, IMAGE_SHAPE, CWRStarC, Library, NearestCentroidC
from ..journal import pack, unpack
from ..storage import journal_words
from .diagnostics import Status
from .head_publisher import HeadParams, HeadPublisher
from .labelled_set import LabelledParams, LabelledSet
from .messages import check_labeled, features_of, image_pixels, message_bytes, message_of, stamp_ns
from .runner import ImageQos, JournaledStateParams, Node, run_node
from .truth_join import TruthJoin

FW = Path(__file__).resolve().parents[2] / "micro_ros_firmware"
HOW = (f"run `make firmware-deps` (cmake, gcc), then `cmake -S {FW} -B {FW}/build && cmake --build {FW}/build -j2`, "
       "or point the `lib` parameter / TINYCL_LIB at a built libtinycl.so")


class BoardParams(JournaledStateParams, HeadParams, LabelledParams):
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
    batch_size: int = Field(presets.CWR_PARAMS["batch_size"], ge=1, le=2**32 - 1,   # the C core's uint32_t
                            description="C CWR* head: samples learned between two consolidations")
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
        self.use_extractor(model)
        if self.n_features != self.lib.n_features:
            raise TinyclError(f"board: model {model} has {self.n_features} features, {self.lib.path.name} "
                              f"was built for {self.lib.n_features}")
        if params.input == "image" and self.hash != self.lib.model_sha256:
            raise TinyclError(f"board: input image runs the C core's own model ({self.lib.model_sha256[:12]}), "
                              f"not {model} ({self.hash[:12]})")
        self.heads = HeadPublisher(self, lambda: (self.python_head(), self.params.class_names, {}))
        self.state = self.open_state("board", self.state_dicts, journal=True)
        restored = self.load_state()
        self.Prediction = bus.msg("Prediction")
        self.pred_pub = bus.create_publisher("predictions", self.Prediction, "reliable")
        if params.input == "labeled":    # the labeler's labelled samples, for a labeler that lost them
            for entity in self.labelled.advertise(bus, params.labelled_topic):
                self.track(entity)
        self.sample_id = 0
        if params.input == "image":
            self.Features = bus.msg("Features")
            self.feat_pub = bus.create_publisher("features", self.Features, "reliable")
            bus.create_timer(params.truth_timeout_s / 2, self.join.flush)
        relearned = self.state.replay(self._relearn)     # what it learned after that checkpoint
        if restored or relearned:
            self.log.info("restored C head (%d classes) from %s%s, head version %d, %d samples", self.head.n_classes,
                          self.state.path, journal_words(relearned), self.heads.version, self.python_head().n_seen)
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
        """A labelled sample: predicted, then learned; journaled once checked, before it is learned."""
        check_labeled(msg)
        x = features_of(msg.features, self.n_features, self.hash, self.bound)
        label = int(msg.label)
        if label != -1:
            check_label(label)
        if label >= 0:
            self.state.record(pack(b"labeled", message_bytes(msg, "LabeledFeatures")))
        if not self.state.replaying:                 # (CWR* learns without the prediction)
            self._publish_prediction(msg.features.header, msg.features.sample_id, *self._predict(x))
        if label >= 0:
            self.head.learn_one(x, label)
            self.heads.learned(stamp_ns(msg.header))
            self.labelled.add(msg, x, label)
            self.state.learned()
        if not self.state.replaying:
            self.heads.check()

    def on_truth(self, msg: Any) -> None:
        check_label(int(msg.label), "ground truth label")
        self.join.add_truth(stamp_ns(msg.header), msg)

    def on_image(self, msg: Any) -> None:
        self.join.add_sample(stamp_ns(msg.header), msg.header, image_pixels(msg, IMAGE_SHAPE))

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
        self._learn_frame(px, x, label, cls, stamp_ns(header))

    def _learn_frame(self, px: np.ndarray, x: np.ndarray, label: int, cls: int, stamp: int) -> None:
        """tinycl_ndc_step's learning half (``cls``: the head's prediction before it); the frame is journaled first."""
        if label < 0 and not self.ncm.n_classes():
            return                                       # nothing to learn from yet
        self.state.record(pack(b"frame", np.ascontiguousarray(px, np.uint8).tobytes(),
                               struct.pack("<qi", stamp, label)))
        if label >= 0:                                   # with a label
            self.head.learn_one(x, label)
            self.ncm.update(x, label)
        else:                                            # pseudo-label; centroids follow the head
            pseudo, _ = self.ncm.pseudo_label(x)
            self.head.learn_one(x, pseudo)
            if cls >= 0:
                self.ncm.update(x, cls)
        self.heads.learned(stamp)
        self.state.learned()
        if not self.state.replaying:
            self.heads.check()

    def _relearn(self, payload: bytes) -> None:
        """Learn one journal record again (``StateStore.replay``, at the start: nothing is published)."""
        op, *parts = unpack(payload)
        if op == b"labeled" and len(parts) == 1 and self.params.input == "labeled":
            self.on_labeled(message_of(self.bus, "LabeledFeatures", parts[0]))
        elif op == b"frame" and len(parts) == 2 and self.params.input == "image":
            stamp, label = struct.unpack("<qi", parts[1])
            px = np.frombuffer(parts[0], np.uint8)
            x = self.lib.features(px)                    # (InputError for a record of another size)
            self._learn_frame(px, x, label, self._predict(x)[0], stamp)
        else:
            raise StateError(f"journal: a record {op[:20]!r} of {len(parts)} parts is not the board's "
                              f"(input {self.params.input})")

    def _publish_prediction(self, header: Any, sample_id: int, cls: int, conf: float) -> None:
        self.pred_pub.publish(self.Prediction(header=header, sample_id=sample_id, class_id=cls,
                                              class_name=self.params.class_names.get(cls, str(cls)), confidence=conf))

    # --- head and state -----------------------------------------------------------------------
    def python_head(self):
        """The C head as the Python CWRStar (through its C blob): what the Head message is made from."""
        return c_state.cwr_from_bytes(self.head.to_bytes())

    def load_state(self) -> bool:
        """The saved C state, or a fresh one (no file, or a bad one: moved aside); whether it restored."""
        self._fresh()
        if self.state.load(self._restore):
            return True
        self._fresh()
        return False

    def _fresh(self) -> None:
        self.head = CWRStarC(self.lib, lr=self.params.lr, batch_size=self.params.batch_size)
        self.head.set_extractor(self.hash)
        self.ncm = NearestCentroidC(self.lib) if self.params.input == "image" else None
        self.heads.reset()
        self.labelled = LabelledSet(self.n_features, self.params.keep_labelled)

    def state_dicts(self) -> dict[str, dict[str, Any]]:
        """The C blobs (``export/c_state.py`` layout) as uint8 arrays, and the published version."""
        arrays = {"head": np.frombuffer(self.head.to_bytes(), np.uint8)}
        if self.ncm is not None:
            arrays["centroids"] = np.frombuffer(self.ncm.to_bytes(), np.uint8)
        return {"board": st.make_state("board", 1, {"input": self.params.input}, arrays, self.heads.meta()),
                "labelled": self.labelled.state_dict()}

    def _restore(self, saved: dict[str, dict[str, Any]]) -> None:
        state = st.check_state(saved.get("board"), "board", 1, ("head",) + (("centroids",) if self.ncm else ()))
        self.head.load_bytes(np.asarray(state["arrays"]["head"], np.uint8).tobytes())
        if self.ncm is not None:
            self.ncm.load_bytes(np.asarray(state["arrays"]["centroids"], np.uint8).tobytes())
        self.heads.restore(state["meta"])
        if "labelled" in saved:
            self.labelled.load_state_dict(saved["labelled"])

    def status(self) -> Status:
        """Classes the C head knows and the head version published."""
        return Status(values={"classes_known": str(self.head.n_classes), "head_version": str(self.heads.version)})

    def close(self) -> None:
        self.heads.close()
        self.state.save()


def main(argv: list[str] | None = None) -> int:
    return run_node(Board, "board", argv)


if __name__ == "__main__":
    raise SystemExit(main())
