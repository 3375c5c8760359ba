"""labeler node: features → labelled features, by TinyNDC online clustering (pseudo-labels).

It runs the preset's whole TinyNDC loop: the clusterer pseudo-labels, and its centroids follow the
active head's prediction. The head it uses for that is a replica of the learner's: it learns
exactly the labels this node publishes, in the same order, so the graph learns exactly what the
in-process experiment learns (the centroids need the head's prediction at every sample, not at
every published version). The learner stays the one owner of the head (answers of a person,
ground truth, fleet merges all go there); the replica *follows* it explicitly, so a crash of either
node cannot leave two different heads: the learner's ``Head`` carries its full state and is stamped
with the last label it learned; this node logs the labels it sent (stamp → the replica's sample
count after it) and, when a learner head shows another count after that label (the learner
restarted from a checkpoint, or this node did), takes the learner's state and re-applies the labels
sent since (one log line). After its own restart it holds samples up to ``follow_wait_s`` for that
head. Labelled samples (``Features.labelled``) initialise the clusters and are kept in the state;
until one has arrived an unlabelled sample cannot be pseudo-labelled and is dropped with one line.

In a fleet the learner merges the fleet's global head into its head; the replica would then
diverge. So this node subscribes ``global_head`` too and applies the *same* merge to its replica
(``federated.merge_into_head`` with the same ``global_policy`` and ``class_names`` as the learner,
each round once): a deterministic function of (head, global head), so both heads stay equal. The
one caveat is timing: each node merges when the global head reaches it, and labelled samples in
flight between the two at that moment are learned before the merge by the labeler and after it by
the learner (none when the merge arrives between streams, as in ``make demo-fleet``). The
centroids are not touched by a merge: with ``cluster_update="head"`` they follow the merged
head's predictions from then on.

``preset: rce`` (:class:`RceLabeler`) labels with TinyRCE instead and asks a person about what it
cannot label: a covered sample is passed on with its class (PSEUDO); an unknown or ambiguous one
becomes a ``LabelRequest`` on ``label_request`` (the picture — the camera image, or a plot of the
IMU / vibration window — the candidate classes, most likely first, and why) and is held; the
``LabelAnswer`` on ``label_answer`` is learned by the RCE and passed on (HUMAN, with the class
name, so the learner names it). The bookkeeping (dedupe, expiry, budget, class names) is
``label_requests.LabelRequests``, saved atomically with the RCE state. Each answer's outcome is
also published as JSON on ``label_status`` (std_msgs/String: request_id, status
learned|refused|expired, class_id, class_name, message).
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import Any, Literal

import numpy as np
from pydantic import Field

from .. import presets
from ..core.errors import InputError, StateError, TinyclError
from ..interfaces import as_sequence
from ..core.federated import merge_into_head
from ..core.rce import AMBIGUOUS, TinyRCE
from ..extractor import FrozenExtractor, model_path
from .label_requests import AnswerError, LabelRequests, Pending, Resolution, render_plot
from ..core import state as st
from ..images import camera_picture
from .learner import global_snapshot, preset_switch
from .messages import features_of, stamp_ns
from .runner import Node, StateParams, run_node

PRESETS = {"tinyndc": presets.tinyndc_paper, "tinycl": presets.tinycl_best, "clustering": presets.clustering_only}


class LabelerParams(StateParams):
    preset: Literal["tinyndc", "tinycl", "clustering", "rce"] = Field(
        "tinycl", description="the TinyNDC loop of this preset (pseudo-labels by clustering), or rce: TinyRCE "
                              "labels and asks a person (label requests)")
    model: str = Field("mnist_0to5_fp32", description="the extractor the features come from (hash + size)")
    class_names: dict[int, str] = Field(default_factory=dict,
                                        description="class id → name, as the learner's (fleet merge; rce: the "
                                                    "names in label requests)")
    follow_head: str = Field("head", description="the learner's head (with its state): the head replica follows it "
                                                 "after a restart of either node (\"\" = never)")
    follow_wait_s: float = Field(3.0, ge=0, description="after a restart, hold samples this long (at most) for the "
                                                        "learner's head")
    global_topic: str = Field("global_head", description="the fleet's merged head (\"\" = not in a fleet)")
    global_policy: Literal["replace", "blend", "add"] = Field(
        "blend", description="how the global head is merged into the head replica; must be the learner's")
    # --- preset rce only: TinyRCE and label requests -------------------------------------------------
    rce_memory_bytes: int = Field(40 * 1024, ge=64, description="rce: memory cap of the prototypes in bytes (each "
                                                                "costs 4 x features + 14 B)")
    rce_r_max: float = Field(8.0, gt=0, description="rce: largest prototype radius (a distance in feature space)")
    rce_metric: Literal["l1", "l2"] = Field("l2", description="rce: distance, Manhattan (l1) or Euclidean (l2); "
                                                              "also of dedupe_distance")
    rce_grow_margin: float = Field(0.25, ge=0, description="rce: a right-class prototype with d/r below 1 + margin "
                                                           "grows to cover the sample; 0: never grows")
    request_ttl_s: float = Field(600.0, gt=0, description="an unanswered request is dropped after this many "
                                                          "seconds")
    max_requests_per_hour: int = Field(60, ge=0, description="the budget of questions (sliding hour); 0: never "
                                                             "ask")
    max_pending: int = Field(50, ge=1, le=1000, description="requests waiting at once")
    dedupe_distance: float = Field(0.0, ge=0, description="a sample this close to a pending one joins it "
                                                          "(0: only an identical one)")
    max_joined: int = Field(16, ge=0, le=1000, description="duplicates kept per request (learned with it)")
    picture_size: tuple[int, int] = Field((160, 90), description="width, height of the plot of an IMU window "
                                                                 "(or of the features) in pixels")


class Labeler(Node):
    Params = LabelerParams

    def __new__(cls, bus: Any, params: LabelerParams) -> "Labeler":
        return super().__new__(RceLabeler if cls is Labeler and params.preset == "rce" else cls)

    def __init__(self, bus: Any, params: LabelerParams) -> None:
        super().__init__(bus, params)
        extractor = FrozenExtractor(model_path(params.model))
        self.hash, self.n_features, self.bound = extractor.hash, extractor.n_features, extractor.feature_bound
        self._init_buffer: list[tuple[Any, np.ndarray, int]] = []
        self._warned_uninitialised = False
        self.state = self.open_state("labeler", self.state_dicts)
        self.load_state()
        # labels learned by the replica and sent, oldest first: stamp → (replica n_seen after it, x, label)
        self._sent: OrderedDict[int, tuple[int, np.ndarray, int]] = OrderedDict()
        self._warned_follow = False
        self.LabeledFeatures = bus.msg("LabeledFeatures")
        self.pub = bus.create_publisher("labeled", self.LabeledFeatures, "reliable")
        self.downstream = [self.pub]
        bus.create_subscription("features", "Features", self.gated(self.on_features), "reliable")
        if params.global_topic and self.system.head is not None:
            bus.create_subscription(params.global_topic, "Head", self.on_global_head, "latched")
        if params.follow_head and self.system.head is not None:
            bus.create_subscription(params.follow_head, "Head", self.on_learner_head, "latched")
            if self.initialised and params.follow_wait_s > 0:   # a restart: wait for the learner's head
                self.active = False
                self._resume_timer = bus.create_timer(params.follow_wait_s, self._resume)

    def _resume(self) -> None:
        """Handle the samples held while waiting for the learner's head (it came, or the wait is over)."""
        if hasattr(self, "_resume_timer"):
            self.bus.destroy(self._resume_timer)
            del self._resume_timer
        if not self.active:
            self.activate()

    def on_learner_head(self, msg: Any) -> None:
        """Keep the replica equal to the learner's head: the head is stamped with the last label it
        learned; if the replica held a different count after that label (the learner restarted
        from a checkpoint, or this node did), take the learner's state and re-apply the labels sent
        since. In an uninterrupted run this never happens (the same labels, in the same order)."""
        try:
            key, n = stamp_ns(msg.header), int(msg.n_seen)
            sent = self._sent.get(key)
            if sent is not None and sent[0] == n:
                while self._sent:                     # the learner holds these: forget them
                    if self._sent.popitem(last=False)[0] == key:
                        break
                return
            if not len(msg.state):
                raise InputError("it carries no state (set the learner's with_state)")
            if msg.extractor_hash != self.hash:
                raise InputError(f"it was trained on extractor {str(msg.extractor_hash)[:12]!r}")
            head = PRESETS[self.params.preset](self.n_features, self.hash).head
            state = st.from_bytes(bytes(msg.state))
            head.load_state_dict(state)
            merged = state["meta"].get("global_round", 0)
            if isinstance(merged, bool) or not isinstance(merged, int) or merged < 0:
                raise InputError(f"its global_round {merged!r} is not a round")
        except TinyclError as exc:
            if not self._warned_follow:
                self.log.error("cannot follow the learner's head v%d: %s", msg.version, str(exc).splitlines()[0])
                self._warned_follow = True
            return self._resume()
        replay = [(k, x, label) for k, (_, x, label) in self._sent.items() if k > key]
        self._sent.clear()
        for k, x, label in replay:
            head.learn_valid(x, label)
            self._sent[k] = (head.n_seen, x, label)
        self.system.head = head
        self.global_round = max(self.global_round, merged)      # a round the learner merged is not merged again
        self.log.info("head replica taken from the learner's head v%d (%d samples), %d label(s) sent since "
                      "re-applied", msg.version, n, len(replay))
        self._resume()

    def _remember_sent(self, stamp: int, x: np.ndarray, label: int) -> None:
        """Log a label the replica learned (bounded: ``SENT_BYTES``, oldest dropped)."""
        self._sent[stamp] = (self.system.head.n_seen, x, label)
        self._sent.move_to_end(stamp)
        while len(self._sent) * (x.nbytes + 64) > SENT_BYTES:
            self._sent.popitem(last=False)

    def on_global_head(self, msg: Any) -> None:
        """Apply the learner's merge to the replica (same checks, same round once, same policy)."""
        snap = global_snapshot(msg, self.hash)
        if snap.version <= self.global_round:
            return
        merge_into_head(self.system.head, snap, self.params.global_policy, self.params.class_names)
        self.global_round = snap.version
        self.log.info("global head round %d merged into the head replica (%s)", snap.version,
                      self.params.global_policy)

    def _fresh(self) -> None:
        self.system = PRESETS[self.params.preset](self.n_features, self.hash)
        self.initialised = False
        self._init_X: np.ndarray = np.zeros((0, self.n_features), np.float32)   # kept in the state
        self._init_y: np.ndarray = np.zeros(0, np.int64)
        self.global_round = 0
        self.n_samples = 0                        # samples labelled so far (saved: what a restart lost)

    def load_state(self) -> None:
        """The saved loop, or a fresh one (no file, or a bad one: moved aside, half-restored parts dropped)."""
        self._fresh()
        if self.state.load(self._restore):
            self.log.info("restored state (%d samples, %d labelled ones kept) from %s", self.n_samples,
                          len(self._init_y), self.state.path)
        else:
            self._fresh()

    def _restore(self, saved: dict[str, dict[str, Any]]) -> None:
        self._check_preset(saved)
        if self.system.clusterer is not None:
            self.system.clusterer.load_state_dict(saved["clusterer"])
        if self.system.head is not None:
            self.system.head.load_state_dict(saved["head"])
            self.global_round = int(saved["head"]["meta"].get("global_round", 0))
        if "labelled" in saved:
            X = st.expect_shape(saved["labelled"], "X", (len(saved["labelled"]["arrays"].get("y", ())), self.n_features))
            self._init_X, self._init_y = X.astype(np.float32), np.asarray(saved["labelled"]["arrays"]["y"], np.int64)
            self.n_samples = int(saved["labelled"]["meta"].get("n_samples", 0))
        self.initialised = True

    def _check_preset(self, saved: dict[str, dict[str, Any]]) -> None:
        """A state of another preset (another clusterer or head, or TinyRCE) is explained, not a KeyError."""
        def kind_of(make: Any) -> str:
            if make == "rce":
                return "TinyRCE"
            system = make(1, "")
            return " + ".join(getattr(part, "kind", "-") for part in (system.clusterer, system.head))

        saved_kind = "TinyRCE" if "rce" in saved else " + ".join(
            str((saved.get(part) or {}).get("kind", "-")) for part in ("clusterer", "head"))
        wanted = kind_of(PRESETS.get(self.params.preset, "rce"))
        if saved_kind != wanted:
            raise StateError(preset_switch(self.state.path, saved_kind, wanted, self.params.preset,
                                           {**PRESETS, "rce": "rce"}, kind_of))

    def state_dicts(self) -> dict[str, dict[str, Any]] | None:
        """Clusterer, head replica, and the labelled samples that initialised them (None before that)."""
        if not self.initialised:
            return None
        states = {"labelled": st.make_state("labelled", 1, {}, {"X": self._init_X, "y": self._init_y},
                                            {"n_samples": self.n_samples})}
        if self.system.clusterer is not None:
            states["clusterer"] = self.system.clusterer.state_dict()
        if self.system.head is not None:
            states["head"] = self.system.head.state_dict()
            states["head"]["meta"]["global_round"] = self.global_round
        return states

    def on_features(self, msg: Any) -> None:
        x = features_of(msg, self.n_features, self.hash, self.bound)
        self.n_samples += 1
        if msg.labelled and msg.true_label >= 0:
            if not self.initialised:
                if len(self._init_buffer) >= INIT_MAX:
                    self._init_buffer.pop(0)
                    self.log.warning("more than %d labelled samples before the first unlabelled one: the "
                                     "oldest is dropped", INIT_MAX)
                self._init_buffer.append((msg, x, int(msg.true_label)))
                return
            self.system.step(x, int(msg.true_label))
            self._publish(msg, int(msg.true_label), 1.0, self.LabeledFeatures.GROUND_TRUTH)
            if self.system.head is not None:
                self._remember_sent(stamp_ns(msg.header), x, int(msg.true_label))
            self.state.learned()
            return
        if not self.initialised and not self._initialise():
            return
        step = self.system.step(x)
        self._publish(msg, step.pseudo_label if step.learned else -1, step.confidence, self.LabeledFeatures.PSEUDO)
        if step.learned and self.system.head is not None:
            self._remember_sent(stamp_ns(msg.header), x, int(step.pseudo_label))
        self.state.learned()

    def _initialise(self) -> bool:
        """Initialise the clusters from the labelled samples so far, and pass them on in order."""
        if not self._init_buffer:
            if not self._warned_uninitialised:
                self.log.error("no labelled sample yet: cannot pseudo-label, dropping unlabelled samples")
                self._warned_uninitialised = True
            return False
        msgs, X, y = zip(*self._init_buffer)
        self.system.init_from_labelled(np.stack(X), list(y))
        self._init_X, self._init_y = np.stack(X).astype(np.float32), np.asarray(y, np.int64)
        n0 = self.system.head.n_seen - len(y) if self.system.head is not None else 0
        for i, (msg, x, label) in enumerate(self._init_buffer):
            self._publish(msg, label, 1.0, self.LabeledFeatures.GROUND_TRUTH)
            if self.system.head is not None:
                self._sent[stamp_ns(msg.header)] = (n0 + i + 1, x, label)
        self.log.info("clusters initialised from %d labelled samples (%d classes)", len(y), len(set(y)))
        self._init_buffer.clear()
        self.initialised = True
        self.state.save()
        return True

    def _publish(self, features: Any, label: int, confidence: float, source: int) -> None:
        self.pub.publish(self.LabeledFeatures(header=features.header, features=features, label=label,
                                              confidence=confidence, source=source))

    def close(self) -> None:
        self.state.save()


INIT_MAX = 10_000          # labelled samples held until the clusters are initialised
SENT_BYTES = 8 << 20      # labels kept to re-apply after the learner's head (26,000 of 64 features)
RAW_CACHE = 64            # raw samples (image / imu) kept to draw the picture of a request
MAX_PICTURE_BYTES = 1 << 20
RAW_CACHE_BYTES = 8 << 20  # and at most this many bytes of them


class RceLabeler(Labeler):
    """TinyRCE labeler: covered → pseudo-label; unknown / ambiguous → a label request to a person."""

    def __init__(self, bus: Any, params: LabelerParams) -> None:  # not Labeler.__init__: no clusterer
        Node.__init__(self, bus, params)
        extractor = FrozenExtractor(model_path(params.model))
        self.hash, self.n_features, self.bound = extractor.hash, extractor.n_features, extractor.feature_bound
        self.state = self.open_state("labeler", lambda: {"rce": self.rce.state_dict(),
                                                          "requests": self.requests.state_dict()})
        self.load_state()
        self.requests.set_names(params.class_names)
        self._raw: OrderedDict[int, tuple[str, Any]] = OrderedDict()
        self._raw_bytes, self._warned_raw = 0, False
        self._request_readers = 0
        self.LabeledFeatures, self.LabelRequest = bus.msg("LabeledFeatures"), bus.msg("LabelRequest")
        self.Features, self.ClassInfo = bus.msg("Features"), bus.msg("ClassInfo")
        self.Image, self.String = bus.msg("sensor_msgs/msg/Image"), bus.msg("std_msgs/msg/String")
        self.Header, self.Time = bus.msg("std_msgs/msg/Header"), bus.msg("builtin_interfaces/msg/Time")
        self.pub = bus.create_publisher("labeled", self.LabeledFeatures, "reliable")
        self.request_pub = bus.create_publisher("label_request", self.LabelRequest, "reliable")
        self.status_pub = bus.create_publisher("label_status", self.String, "reliable")
        self.downstream = [self.pub]
        # raw samples first: the executor serves subscriptions in this order, so when an image and
        # its features are both waiting the image is cached before a request needs its picture
        bus.create_subscription("image", "sensor_msgs/msg/Image", self._on_raw_image, "sensor_data")
        bus.create_subscription("imu", "ImuWindow", self._on_raw_imu, "sensor_data")
        bus.create_subscription("features", "Features", self.on_features, "reliable")
        bus.create_subscription("label_answer", "LabelAnswer", self.on_answer, "reliable")
        bus.create_timer(1.0, self._tick)
        self.log.info("TinyRCE labeler: %d classes, %d prototypes, %d pending label requests",
                      len(self.rce.classes), self.rce.n_prototypes, len(self.requests.pending))

    def load_state(self) -> None:
        """The saved RCE and requests, or fresh ones (no file, or a bad one: moved aside)."""
        self._fresh()

        def apply(saved: dict[str, dict[str, Any]]) -> None:
            self._check_preset(saved)
            self.rce.load_state_dict(saved["rce"])
            if "requests" in saved:
                self.requests.load_state_dict(saved["requests"], self.n_features)

        if self.state.load(apply):
            self.log.info("restored state from %s", self.state.path)
        else:   # a bad file was moved aside: drop whatever it half-restored
            self._fresh()

    def _fresh(self) -> None:  # type: ignore[override]
        p = self.params
        self.rce = TinyRCE(self.n_features, memory_bytes=p.rce_memory_bytes, r_max=p.rce_r_max,
                           grow_margin=p.rce_grow_margin, metric=p.rce_metric, extractor_hash=self.hash)
        self.requests = LabelRequests(p.request_ttl_s, p.max_requests_per_hour, p.dedupe_distance,
                                      p.max_pending, p.max_joined, p.rce_metric)

    # --- samples ------------------------------------------------------------------------------
    def _on_raw_image(self, msg: Any) -> None:
        self._remember(msg.header, "image", msg)

    def _on_raw_imu(self, msg: Any) -> None:
        self._remember(msg.header, "imu", msg)

    def _remember(self, header: Any, kind: str, msg: Any) -> None:
        """Keep raw samples to draw a request's picture: at most ``RAW_CACHE`` of them and
        ``RAW_CACHE_BYTES`` in all (oldest dropped); one too big to draw is not kept at all."""
        size = _raw_bytes(kind, msg)
        if size > MAX_PICTURE_BYTES:
            if not self._warned_raw:
                self.log.warning("raw %s of %d bytes is too big to show in a label request: not kept "
                                 "(at most %d bytes)", kind, size, MAX_PICTURE_BYTES)
                self._warned_raw = True
            return
        key = stamp_ns(header)
        old = self._raw.pop(key, None)
        self._raw_bytes += size - (_raw_bytes(*old) if old else 0)
        self._raw[key] = (kind, msg)
        while self._raw and (len(self._raw) > RAW_CACHE or self._raw_bytes > RAW_CACHE_BYTES):
            self._raw_bytes -= _raw_bytes(*self._raw.popitem(last=False)[1])

    def on_features(self, msg: Any) -> None:
        x = features_of(msg, self.n_features, self.hash, self.bound)
        if msg.labelled and msg.true_label >= 0:
            label = int(msg.true_label)
            self.rce.learn_valid(x, label)
            self._publish(msg, label, 1.0, self.LabeledFeatures.GROUND_TRUTH)
            self._count()
            return
        dec = self.rce.decide_valid(x)
        if not dec.wants_label:
            self._publish(msg, int(dec.label), float(max(0.0, 1.0 - dec.novelty)), self.LabeledFeatures.PSEUDO)
            self._count()
            return
        self._publish(msg, -1, 0.0, self.LabeledFeatures.PSEUDO)   # predicted downstream, not learned
        reason = self._reason(dec)
        order = np.argsort(-self.rce.predict_proba(x), kind="stable") if self.rce.classes else []
        candidates = [self.rce.classes[int(i)] for i in order]
        outcome, req = self.requests.offer(x, time.time(), stamp_ns=stamp_ns(msg.header),
                                           sample_id=int(msg.sample_id), reason=reason, candidates=candidates)
        if outcome == "asked" and req is not None:
            req.picture = self._picture(msg, x)
            self.log.info("label request %s: %s (sample %d)", req.request_id, reason, msg.sample_id)
            self._send_request(req)
            self._save()
        elif outcome == "joined" and req is not None:
            self.log.debug("sample %d joins pending label request %s", msg.sample_id, req.request_id)
            self.state.changed()
        else:
            self.log.debug("sample %d not asked about: request budget spent (%d this hour, %d pending)",
                           msg.sample_id, len(self.requests.asked_at), len(self.requests.pending))
        self._count()

    def _reason(self, dec: Any) -> str:
        if dec.reason == AMBIGUOUS:
            a, b = (self._name(c) for c in dec.candidates[:2])
            return f"ambiguous between {a} and {b}"
        if dec.reason == "empty":
            return "novel: nothing learned yet"
        return "novel: no prototype covers it"

    def _name(self, cid: int) -> str:
        return self.requests.names.get(int(cid), str(cid))

    def _picture(self, features: Any, x: np.ndarray) -> dict[str, Any]:
        """The sample as a person can see it: the camera image, a plot of the IMU window, or of the features."""
        w, h = self.params.picture_size
        kind, raw = self._raw.get(stamp_ns(features.header), (None, None))
        try:
            if kind == "image":   # any camera encoding → rgb8/mono8 the phone shows, at most 640 wide
                img = camera_picture(raw, 640)
                if img.nbytes <= MAX_PICTURE_BYTES:
                    return {"height": img.shape[0], "width": img.shape[1], "encoding": "mono8" if img.ndim == 2
                            else "rgb8", "step": img.shape[1] * (1 if img.ndim == 2 else 3), "data": img.ravel()}
            elif kind == "imu":
                n_ch = int(raw.n_channels)
                values = np.asarray(raw.data, np.float32)
                if n_ch < 1 or values.size % n_ch:
                    raise InputError(f"imu window of {values.size} values is not samples x {n_ch} channels")
                rgb = render_plot(values.reshape(-1, n_ch).T, w, h)
                return {"height": h, "width": w, "encoding": "rgb8", "step": 3 * w, "data": rgb.ravel()}
        except TinyclError as exc:
            self.log.warning("cannot draw the raw sample (%s): showing its features", exc)
        rgb = render_plot(x[None, :], w, h, bars=True)
        return {"height": h, "width": w, "encoding": "rgb8", "step": 3 * w, "data": rgb.ravel()}

    # --- requests and answers -----------------------------------------------------------------
    def _header(self, ns: int | None = None, frame: str = "") -> Any:
        if ns is None:
            return self.Header(stamp=self.bus.stamp(), frame_id=frame)
        return self.Header(stamp=self.Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000), frame_id=frame)

    def _features_msg(self, req: Pending, i: int) -> Any:
        return self.Features(header=self._header(req.stamps[i]), data=as_sequence(req.samples[i], "f"),
                             extractor_hash=self.hash,
                             sample_id=req.sample_id if i == 0 else 0, true_label=-1, labelled=False)

    def _send_request(self, req: Pending) -> None:
        pic = req.picture
        picture = self.Image(header=self._header(req.stamp_ns), height=pic.get("height", 0), width=pic.get("width", 0),
                             encoding=pic.get("encoding", ""), is_bigendian=0, step=pic.get("step", 0),
                             data=as_sequence(pic.get("data", b""), "B"))
        counts = self.rce.sample_counts()
        candidates = [self.ClassInfo(id=c, name=self._name(c), sample_count=min(int(counts.get(c, 0)), 2**32 - 1))
                      for c in req.candidates if c in self.rce.classes]
        self.request_pub.publish(self.LabelRequest(header=self._header(int(req.created * 1e9)),
                                                   request_id=req.request_id, picture=picture, candidates=candidates,
                                                   reason=req.reason, features=self._features_msg(req, 0)))

    def on_answer(self, msg: Any) -> None:
        rid = str(msg.request_id)
        try:
            res = self.requests.check_answer(rid, int(msg.class_id), msg.new_class_name, self.rce.classes,
                                             time.time())
        except AnswerError as exc:
            self.requests.counters["refused"] += 1
            self._status(rid, "refused", message=str(exc))
            self.log.error("%s", exc)
            return
        self._learn_answer(res, str(msg.answered_by))

    def _learn_answer(self, res: Resolution, by: str) -> None:
        req = res.request
        for x in req.samples:
            self.rce.learn_valid(x, res.class_id)
        self.requests.commit(res)
        for i in range(len(req.samples)):
            self.pub.publish(self.LabeledFeatures(header=self._header(), features=self._features_msg(req, i),
                                                  label=res.class_id, confidence=1.0,
                                                  source=self.LabeledFeatures.HUMAN, label_name=res.class_name))
        self._save()
        self._status(req.request_id, "learned", res.class_id, res.class_name)
        self.log.info("label request %s answered%s: class %d %r%s, %d sample(s) learned", req.request_id,
                      f" by {by}" if by else "", res.class_id, res.class_name, " (new class)" if res.new_class else "",
                      len(req.samples))

    def _status(self, rid: str, status: str, class_id: int = -1, class_name: str = "", message: str = "") -> None:
        self.status_pub.publish(self.String(data=json.dumps(
            {"request_id": rid, "status": status, "class_id": class_id, "class_name": class_name, "message": message})))

    def _tick(self) -> None:
        """Every second: expire old requests, resend the pending ones to a new reader, save if needed."""
        for req in self.requests.expire(time.time()):
            self.log.info("label request %s expired unanswered (%d sample(s) dropped)", req.request_id,
                          len(req.samples))
            self._status(req.request_id, "expired")
            self.state.changed()
        readers = self.request_pub.get_subscription_count()
        if readers > self._request_readers and self.requests.pending:
            for req in self.requests.pending.values():
                self._send_request(req)
        self._request_readers = readers
        if self.state.dirty:
            self._save()

    # --- labelled output and state ------------------------------------------------------------
    def _publish(self, features: Any, label: int, confidence: float, source: int) -> None:
        self.pub.publish(self.LabeledFeatures(header=features.header, features=features, label=label,
                                              confidence=confidence, source=source,
                                              label_name=self.requests.names.get(label, "") if label >= 0 else ""))

    def _count(self) -> None:
        self.state.learned()

    def _save(self) -> None:
        self.state.save()

    def close(self) -> None:
        self._save()


def _raw_bytes(kind: str, msg: Any) -> int:
    return len(msg.data) * (4 if kind == "imu" else 1)     # image: uint8; imu: float32


def main(argv: list[str] | None = None) -> int:
    return run_node(Labeler, "labeler", argv)


if __name__ == "__main__":
    raise SystemExit(main())
