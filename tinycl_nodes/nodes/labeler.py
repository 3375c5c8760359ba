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
head. What it learned between its last checkpoint and a kill is in its journal (``journal.py``) and learned again
first, sent to no one twice. Labelled samples (``Features.labelled``) initialise the clusters (the first ``INIT_MAX``; any after those
are learned as they come) and are kept in the state. They are passed on once the clusters start (not as they come:
a labeler stopped before that keeps none of them, and a learner that held some would learn them twice when the
replay comes again).
A labeler without any (its state file lost: deleted, or moved aside as corrupt) gets them back from
the learner, which keeps the ground-truth samples it learned and latches them on ``recover_topic``
(``labelled_set.py``): the first unlabelled sample is held (with those after it) until they came,
at most ``follow_wait_s``, and one line says "recovered N labelled samples from …". With none
there, an unlabelled sample cannot be pseudo-labelled and is dropped (one line).

No sample is handled before ``labeled`` has ``wait_for_subscribers`` readers (the learner or board,
and the label app in tinyrce): a reliable, volatile sample sent before its reader matched is lost.

In a fleet the learner merges the fleet's global head into its head; the replica would then
diverge. So this node subscribes ``global_head`` too and applies the *same* merge to its replica
(``federated.merge_into_head`` with the same ``global_policy`` and ``class_names`` as the learner,
each round once): a deterministic function of (head, global head), so both heads stay equal. The
one caveat is timing: each node merges when the global head reaches it, and labelled samples in
flight between the two at that moment are learned before the merge by the labeler and after it by
the learner (none when the merge arrives between streams, as in ``make demo-fleet``). The
centroids of known classes are not touched by a merge: with ``cluster_update="head"`` they follow the
merged head's predictions from then on; a class the fleet brought gets a centroid at its mean
(``TinyNDC.take_classes``), so that with ``"self"`` its samples are pseudo-labelled as it, and a class a round
took out of the head (exact mode: only a removed device had samples of it) loses its centroid
(``TinyNDC.drop_classes``), so that none is pseudo-labelled as it; both also when the replica takes a round in with
the learner's head.

``preset: rce`` (:class:`RceLabeler`) labels with TinyRCE instead and asks a person about what it
cannot label: a covered sample is passed on with its class (PSEUDO); an unknown or ambiguous one
becomes a ``LabelRequest`` on ``label_request`` (the picture — the camera image, raw on ``image`` or
JPEG/PNG on ``<image>/compressed`` as ``image_transport`` says, or a plot of the
IMU / vibration window, kept as JPEG or PNG while the question waits or its group forms and sent as raw pixels —
the candidate classes, most likely first, and why) and is held; the
``LabelAnswer`` on ``label_answer`` is learned by the RCE and passed on (HUMAN, with the class
name, so the learner names it). The bookkeeping (dedupe, expiry, budget, class names) is
``label_requests.LabelRequests``, saved atomically with the RCE state; what changed since the last checkpoint (the
samples learned from their labels or held for a question, the questions asked, skipped and answered and their
pictures, the answers changed or withdrawn, the classes renamed, and the pseudo-labels of classes an answer that can
still change taught: ``core/undo.PassedOn``) is in its journal,
learned again after a kill at the time and under the request id it first had. Each answer's outcome is
also published as JSON on ``label_status`` (std_msgs/String: request_id, status
learned|refused|expired|skipped|withdrawn, class_id, class_name, message; new_class with an answer just learned), and
so is each rename's (``rename_class``, a LabelAnswer with the rename's own request id: renamed|refused). The verdicts
on the questions closed lately stand on ``label_closed`` (std_msgs/String, latched: one JSON message, for a label app
started again). The classes it knows, with their names and counts,
are on ``classes`` (ClassList, latched) whenever they change: what the label app shows.
"""

from __future__ import annotations

import json
import struct
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Iterable, Literal

import numpy as np
from pydantic import Field

from .. import presets, steady_wall
from ..bus.qos import QosProfile
from ..core.errors import InputError, StateError, TinyclError
from ..core.validation import check_label
from ..interfaces import as_sequence
from ..core.federated import HeadSnapshot, merge_into_head, snapshot_from_head
from ..core.learn_gate import LearnGate, RecentViews
from ..core.prior_worth import worth_words
from ..core.rce import AMBIGUOUS, TinyRCE
from ..core import state as st
from ..core.asking import AskPolicy
from ..core.undo import PassedOn, ReplayUndo, Revision
from ..images import camera_picture, decode_compressed, picture_bytes
from ..journal import pack, unpack
from ..storage import RepeatedFailure, journal_words
from .diagnostics import Status
from .frame_cache import Entry, FrameCache, entry_bytes
from .label_requests import (MAX_REQUEST_ID, NEW_CLASS, NO_CLASS, REQUEST_TTL_S, AnswerError, LabelRequests, Pending,
                             Resolution, render_plot)
from .learner import global_snapshot, preset_switch
from .messages import features_of, message_bytes, message_of, stamp_ns
from .runner import ImageQos, ImageTransport, JournaledStateParams, ModelPriorParams, Node, run_node

PRESETS = {"tinyndc": presets.tinyndc_paper, "tinycl": presets.tinycl_best, "clustering": presets.clustering_only}


class LabelerParams(JournaledStateParams, ModelPriorParams):
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
    global_policy: Literal["auto", "replace", "blend", "add"] = Field(
        "auto", description="how the global head is merged into the head replica; must be the learner's")
    recover_topic: str = Field("labelled_init", description="the labelled samples the learner keeps (latched): "
                                                            "without state, the clusters are initialised from "
                                                            "them (\"\" = never)")
    wait_for_subscribers: int = Field(1, ge=0, description="readers of labeled to wait for before the first "
                                                           "sample is handled: the learner (or board), and the "
                                                           "label app in tinyrce")
    wait_timeout_s: float = Field(30.0, gt=0, description="handle samples anyway after this many seconds "
                                                          "without those readers (one line)")
    # --- preset rce only: TinyRCE and label requests -------------------------------------------------
    rce_memory_bytes: int = Field(40 * 1024, ge=64, description="rce: memory cap of the prototypes in bytes (each "
                                                                "costs 4 x features + 14 B)")
    rce_r_max: float = Field(8.0, gt=0, description="rce: largest prototype radius (a distance in feature space)")
    rce_metric: Literal["l1", "l2"] = Field("l2", description="rce: distance, Manhattan (l1) or Euclidean (l2); "
                                                              "also of dedupe_distance")
    rce_repeat_factor: float = Field(0.05, ge=0, lt=1, description="rce: a covered sample within this x rce_r_max "
                                                                   "(rce_metric) of one of the last 16 learned is "
                                                                   "that view again (a parked robot): predicted, not "
                                                                   "learned; 0: off")
    rce_grow_margin: float = Field(0.25, ge=0, description="rce: a right-class prototype with d/r below 1 + margin "
                                                           "grows to cover the sample; 0: never grows")
    request_ttl_s: float = Field(REQUEST_TTL_S, gt=0, description="an unanswered request is dropped after this "
                                                                  "many seconds")
    max_requests_per_hour: int = Field(60, ge=0, description="the budget of questions (sliding hour); 0: never "
                                                             "ask")
    max_pending: int = Field(50, ge=1, le=1000, description="requests waiting at once")
    ask_policy: Literal["grouped", "each"] = Field(
        "grouped", description="grouped: alike novel samples form a group, asked about once (the answer labels them "
                               "all), most informative first; each: ask about every novel sample at once (the old "
                               "policy)")
    dedupe_distance: float = Field(0.0, ge=0, description="grouped: radius of a question group (0: rce_r_max x "
                                                          "group_radius_factor); each: a sample this close to a "
                                                          "pending one joins it")
    group_radius_factor: float = Field(0.85, gt=0, le=4, description="grouped, dedupe_distance 0: the group radius "
                                                                     "as a fraction of rce_r_max (chosen on "
                                                                     "validation: experiment asking)")
    min_group: int = Field(2, ge=1, le=1000, description="grouped: samples a group needs before it is asked about")
    group_wait_s: float = Field(10.0, ge=0, description="grouped: a smaller group is dropped unasked after this "
                                                         "many seconds (a one-off)")
    max_open: int = Field(1, ge=1, le=1000, description="grouped: questions waiting for an answer at once")
    lone_share: float = Field(0.0, ge=0, le=1, description="grouped: a group still smaller than min_group after "
                                                           "group_wait_s is asked about (most novel first) while "
                                                           "the questions asked stay below this share of the novel "
                                                           "samples seen; otherwise dropped")
    recent_s: float = Field(3600.0, ge=0, description="grouped: a sample alike to a group answered this recently is "
                                                     "learned with that answer, not asked about again")
    recent_radius_factor: float = Field(0.0, ge=0, le=4, description="grouped: how far an answer reaches, as a "
                                                                     "fraction of rce_r_max: a sample this close to "
                                                                     "an answered sample is learned with it (0: the "
                                                                     "group radius; chosen on validation: experiment "
                                                                     "asking)")
    recent_agree: bool = Field(True, description="grouped: an answer reaches a sample only when the RCE's best "
                                                 "guess for it (nearest prototype) is the answer's class")
    max_joined: int = Field(31, ge=0, le=1000, description="samples kept per question besides the one shown "
                                                           "(learned with the answer)")
    undo_samples: int = Field(1000, ge=1, le=100000, description="samples learned lately that a changed or "
                                                                 "withdrawn answer can still be taken out of; as "
                                                                 "many pseudo-labels of the classes answers taught")
    picture_size: tuple[int, int] = Field((320, 200), description="width, height of the plot of an IMU window "
                                                                  "(time series with axes and units) in pixels")
    image_qos: ImageQos = "sensor_data"
    image_transport: ImageTransport = "raw"       # the pictures of questions: the extractor's frames, as it reads them


class Labeler(Node):
    Params = LabelerParams

    def __new__(cls, bus: Any, params: LabelerParams) -> "Labeler":
        return super().__new__(RceLabeler if cls is Labeler and params.preset == "rce" else cls)

    def __init__(self, bus: Any, params: LabelerParams) -> None:
        super().__init__(bus, params)
        self.prior = self.use_model_prior(self.use_extractor(params.model))
        self._init_buffer: list[tuple[Any, np.ndarray, int]] = []
        self._warned_uninitialised = False
        self._not_learned = NotLearned(self.log)
        self.state = self.open_state("labeler", self.state_dicts, journal=True)
        restored = self.load_state()
        # labels learned by the replica and sent, oldest first: stamp → (replica n_seen after it, x, label)
        self._sent: OrderedDict[int, tuple[int, np.ndarray, int]] = OrderedDict()
        self._warned_follow = False
        self.LabeledFeatures = bus.msg("LabeledFeatures")
        self.pub = bus.create_publisher("labeled", self.LabeledFeatures, "reliable")
        self.downstream = [(self.pub, params.wait_for_subscribers)]
        bus.create_subscription("features", "Features", self.gated(self.on_features), "reliable")
        # recovery of the labelled samples (labelled_set.py): they come from the writer's history
        self._recovered: list[tuple[np.ndarray, int]] = []
        self._recovered_t = 0.0
        self._recovery: dict[str, Any] = {}      # while unlabelled samples are held for them: deadline, timer
        self._recovery_over = False
        self._head_taken = False
        if params.recover_topic:
            bus.create_subscription(params.recover_topic, "LabeledFeatures", self.on_recovered,
                                    QosProfile(reliable=True, transient_local=True, depth=0))
        if params.global_topic and self.system.head is not None:
            bus.create_subscription(params.global_topic, "Head", self.on_global_head, "rounds")
        relearned = self.state.replay(self._relearn)     # what it learned after that checkpoint
        if restored or relearned:
            self.log.info("restored state (%d samples, %d labelled ones kept) from %s%s", self.n_samples,
                          len(self._init_y), self.state.path,
                          journal_words(relearned))
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
        since. In an uninterrupted run this never happens (the same labels, in the same order). A head
        of another kind (the learner's ``latent_head``) is not followed: the replica keeps its own state."""
        if msg.kind != self.system.head.kind:
            if not self._warned_follow:
                self.log.info("the learner's head is a %s, the replica a %s: the replica keeps its own state",
                              msg.kind, self.system.head.kind)
                self._warned_follow = True
            return self._resume()
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
        before, self.system.head = list(self.system.head.classes), head
        self._head_taken = True
        words = self._clusters_follow(before, None) if merged > self.global_round else ""
        self.global_round = max(self.global_round, merged)      # a round the learner merged is not merged again
        self.log.info("head replica taken from the learner's head v%d (%d samples), %d label(s) sent since "
                      "re-applied%s", msg.version, n, len(replay), words)
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
        before = list(self.system.head.classes)
        res = merge_into_head(self.system.head, snap, self.params.global_policy, self.params.class_names)
        self.global_round = snap.version
        words = self._clusters_follow(before, snap)
        self.state.save()       # as the learner does: the journal's samples after it are learned again after it
        self.log.info("global head round %d merged into the head replica (%s)%s", snap.version, res.policy, words)

    def _clusters_follow(self, before: list[int], brought: HeadSnapshot | None) -> str:
        """The clusters follow a fleet round the head replica took in (merged here, or with the learner's head that
        merged it: ``brought`` None): a cluster at the fleet's class mean for each class it brought
        (``TinyNDC.take_classes``), and none any more for each class in ``before`` it took out of the head (samples
        that left the fleet: only a removed device had that class, this one has no samples of it). Kept, such a
        cluster pseudo-labelled new samples as that class, and the head learned them as this device's own and shared
        them again. Returns the words of the log line."""
        seeded = self.system.take_classes(brought if brought is not None else snapshot_from_head(self.system.head))
        dropped = self.system.drop_classes(set(before) - set(self.system.head.classes))
        return ((f"; new clusters at the fleet's means of classes {seeded}" if seeded else "")
                + (f"; the clusters of classes {dropped} dropped (no sample of them left in the head)" if dropped
                   else ""))

    def _fresh(self) -> None:
        self.system = PRESETS[self.params.preset](self.n_features, self.hash)
        self.initialised = False
        self._init_X: np.ndarray = np.zeros((0, self.n_features), np.float32)   # kept in the state
        self._init_y: np.ndarray = np.zeros(0, np.int64)
        self.global_round = 0
        self.n_samples = 0                        # samples labelled so far (saved: what a restart lost)

    def load_state(self) -> bool:
        """The saved loop, or a fresh one (no file, or a bad one: moved aside, half-restored parts dropped); whether
        it was restored."""
        self._fresh()
        if self.state.load(self._restore) is not None:
            return True
        self._fresh()
        return False

    def _restore(self, saved: dict[str, dict[str, Any]]) -> None:
        self._check_preset(saved)
        if self.system.head is not None:   # first: a head of another model stops the node (storage.StateStore.load)
            self.system.head.load_state_dict(saved["head"])
            self.global_round = int(saved["head"]["meta"].get("global_round", 0))
        if self.system.clusterer is not None:
            self.system.clusterer.load_state_dict(saved["clusterer"])
        if "labelled" in saved:
            X = st.expect_shape(saved["labelled"], "X", (len(saved["labelled"]["arrays"].get("y", ())), self.n_features))
            self._init_X, self._init_y = X.astype(np.float32), np.asarray(saved["labelled"]["arrays"]["y"], np.int64)
            self.n_samples = int(saved["labelled"]["meta"].get("n_samples", 0))
        if self.system.gate is not None:
            restore_views(self.system.gate.views, saved, self.log)
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
        if self.system.gate is not None:
            states[VIEWS] = self.system.gate.views.state_dict()
        return states

    def _relearn(self, payload: bytes) -> None:
        """One journal record again (``StateStore.replay``, at the start: nothing is published)."""
        self.on_features(message_of(self.bus, "Features", payload))

    def on_features(self, msg: Any) -> None:
        """A sample: pseudo-labelled (or a labelled one learned) and passed on. What changes the clusters or the head
        is journaled before it is passed on, and counted: a checkpoint it brings about holds it (one the clusters'
        start takes does not); a pseudo-label the gate holds back changes nothing, and writes nothing."""
        x = features_of(msg, self.n_features, self.hash, self.bound)
        labelled = msg.labelled and msg.true_label >= 0
        if not labelled and not self.initialised and not self._initialise(msg):
            return
        self.n_samples += 1
        if labelled:
            self.state.record(message_bytes(msg, "Features"))
            if not self.initialised:
                self._init_buffer.append((msg, x, int(msg.true_label)))
                if len(self._init_buffer) == INIT_MAX:    # enough to start from: the rest are learned as they come
                    self._initialise(msg)
                return
            self.system.step(x, int(msg.true_label))
            self._publish(msg, int(msg.true_label), 1.0, self.LabeledFeatures.GROUND_TRUTH)
            if self.system.head is not None:
                self._remember_sent(stamp_ns(msg.header), x, int(msg.true_label))
            self.state.learned()
            return
        step = self.system.step(x)
        if step.changed:
            self.state.record(message_bytes(msg, "Features"))
        why = step.not_learned_because
        self.log.debug("sample %d: pseudo-label %s (confidence %.3f)%s", msg.sample_id, step.pseudo_label,
                       step.confidence, f", not passed on: {why}" if why else "")
        if why:
            self._not_learned.note(why)
        self._publish(msg, step.pseudo_label if step.learned else -1, step.confidence, self.LabeledFeatures.PSEUDO)
        if step.learned and self.system.head is not None:
            self._remember_sent(stamp_ns(msg.header), x, int(step.pseudo_label))
        if step.changed:
            self.state.learned()

    def _initialise(self, msg: Any) -> bool:
        """Initialise the clusters from the labelled samples so far, and pass them on in order; with
        none, from the samples the learner kept (``recover_topic``): ``msg`` is held until they came."""
        if not self._init_buffer:
            if self._recovered and self._recovery_over:
                self._recover()
                return True
            if self.params.recover_topic and not self._recovery_over:
                self.hold(self.on_features, msg)
                if not self._recovery:
                    self._recovery = {"deadline": time.monotonic() + self.params.follow_wait_s,
                                      "timer": self.bus.create_timer(RECOVERY_POLL_S, self._poll_recovery)}
                return False
            if not self._warned_uninitialised:
                self.log.error("no labelled sample yet: cannot pseudo-label, dropping unlabelled samples%s", START_HINT)
                self._warned_uninitialised = True
            return False
        msgs, X, y = zip(*self._init_buffer)
        self.system.init_from_labelled(np.stack(X), list(y), self.prior)
        self._init_X, self._init_y = np.stack(X).astype(np.float32), np.asarray(y, np.int64)
        n0 = self.system.head.n_seen - len(y) if self.system.head is not None else 0
        for i, (msg, x, label) in enumerate(self._init_buffer):
            self._publish(msg, label, 1.0, self.LabeledFeatures.GROUND_TRUTH)
            if self.system.head is not None:
                self._sent[stamp_ns(msg.header)] = (n0 + i + 1, x, label)
        self.log.info("clusters initialised from %d labelled samples (%d classes)%s", len(y), len(set(y)),
                      self._prior_words())
        self._init_buffer.clear()
        self.initialised = True
        self.state.save(wait=False)               # by the writer thread: the first stream sample does not wait
        return True

    def _prior_words(self) -> str:
        """How the clusters started from the model's class statistics too (model_prior.py), if they did."""
        if self.prior is None or not self.system.model_prior:
            return ""
        return (f" and the model's class statistics ({int(self.prior.counts.sum())} training images of classes "
                f"{sorted(self.prior.class_ids.tolist())}; {worth_words(self.prior, self.system.prior_samples)})")

    def on_recovered(self, msg: Any) -> None:
        """A labelled sample the learner kept (``labelled_set.py``): used only by a labeler without any."""
        if self.initialised or self._init_buffer or len(self._recovered) >= INIT_MAX:
            return
        x = features_of(msg.features, self.n_features, self.hash, self.bound)
        self._recovered.append((x, check_label(int(msg.label))))
        self._recovered_t = time.monotonic()

    def _poll_recovery(self) -> None:
        """While samples are held for the recovery: go on once the learner's samples (and head) came
        and no more arrive, or once ``follow_wait_s`` is over (with what came, or none: one line)."""
        now = time.monotonic()
        came = self._recovered and now - self._recovered_t >= RECOVERY_QUIET_S
        head = self._head_taken or not self.params.follow_head or self.system.head is None
        if not (came and head) and now < self._recovery["deadline"]:
            return
        self.bus.destroy(self._recovery.pop("timer"))
        self._recovery_over = True
        if self._recovered:
            self._recover()
        else:
            self.log.error("no labelled sample yet, and none came on %s within %.1f s: cannot pseudo-label, "
                           "dropping unlabelled samples%s", self.bus.topic_name(self.params.recover_topic),
                           self.params.follow_wait_s, START_HINT)
            self._warned_uninitialised = True
        self._resume()

    def _recover(self) -> None:
        """Initialise the clusters from the learner's kept samples (not passed on: it learned them)."""
        X = np.stack([x for x, _ in self._recovered]).astype(np.float32)
        y = np.asarray([label for _, label in self._recovered], np.int64)
        if self._head_taken or self.system.head is None:   # the replica is the learner's head already
            self.system.init_clusters(X, y, self.prior)
        else:
            self.system.init_from_labelled(X, y, self.prior)
        self._init_X, self._init_y, self._recovered = X, y, []
        self.initialised = True
        self.log.info("recovered %d labelled samples (%d classes) from %s: clusters initialised from them%s", y.size,
                      len(set(y.tolist())), self.bus.topic_name(self.params.recover_topic), self._prior_words())
        self.state.save()

    def _publish(self, features: Any, label: int, confidence: float, source: int) -> None:
        if self.state.replaying:        # sent before the restart
            return
        self.pub.publish(self.LabeledFeatures(header=features.header, features=features, label=label,
                                              confidence=confidence, source=source, label_name=self._name_of(label)))

    def _name_of(self, label: int) -> str:
        """The name a labelled sample goes out with (the learner names the class by it): none here."""
        return ""

    def status(self) -> Status:
        """Whether it pseudo-labels yet (it needs labelled samples first), the classes its head knows."""
        head = self.system.head
        return Status(values={"initialised": "yes" if self.initialised else "no (waiting for labelled samples)",
                              "classes_known": str(len(head.classes) if head is not None else 0)})

    def close(self) -> None:
        self.state.save()


class NotLearned:
    """Pseudo-labels the loop held back (``TinyNDC.step``'s ``not_learned_because``): a parked robot's camera brings
    30 a second, so the first is said at once, then at most once a minute, with the counts of each reason."""

    EVERY_S = 60.0
    WHY = {LearnGate.OUTLIER: "the camera sees what no class looks like: a wall, a covered lens",
           LearnGate.REPEAT: "the camera stays on one view"}

    def __init__(self, log: Any) -> None:
        self.log = log
        self.counts: dict[str, int] = {}
        self.said_at: float | None = None

    def note(self, why: str) -> None:
        self.counts[why] = self.counts.get(why, 0) + 1
        now = time.monotonic()
        if self.said_at is not None and now - self.said_at < self.EVERY_S:
            return
        since = "" if self.said_at is None else f" in the last {now - self.said_at:.0f} s"
        self.log.info("pseudo-labels not learned%s: %s", since, "; ".join(
            f"{n} {w}" + (f" ({self.WHY[w]})" if w in self.WHY else "") for w, n in sorted(self.counts.items())))
        self.counts, self.said_at = {}, now


INIT_MAX = 10_000          # labelled samples that start the clusters at most (those after them are learned as they come)
RECOVERY_POLL_S = 0.1      # while held for the learner's kept samples: how often to look
RECOVERY_QUIET_S = 0.3     # they come as one burst (the writer's history): done when none came this long
#: what a clustering labeler that has no labelled sample needs (a camera graph on a robot that starts from nothing)
START_HINT = (" (clustering starts from labelled samples: run the replay once in this namespace, its state keeps "
              "them; or learn from a person's answers with the camera graph, camera.launch.py)")
SENT_BYTES = 8 << 20      # labels kept to re-apply after the learner's head (26,000 of 64 features)
RAW_CACHE = 64            # raw samples (image / imu) kept to draw the picture of a request (frame_cache.py)
MAX_UNDOABLE = 200        # recent answers a person can still change or withdraw
#: a journaled pseudo-label's stamp (ns), label and confidence, after its features
PASSED = struct.Struct("<qid")
ANSWER = struct.Struct("<qd")      # a journaled answer's class id and wall-clock time
CLASS_ID = struct.Struct("<q")     # a journaled correction's or rename's class id
PICTURE_SIDE = 640        # a camera frame shown to a person fits in this many pixels squared
MAX_PICTURE_BYTES = PICTURE_SIDE * PICTURE_SIDE * 3   # the largest picture: a square colour frame


class Refused(AnswerError):
    """A person's change of an answer that cannot be taken: ``said`` to the phone, the message to the log."""

    def __init__(self, said: str, message: str) -> None:
        super().__init__(message)
        self.said = said


@dataclass
class Correction:
    """A change of an answer taken (``RceLabeler._correct``): what the learner and the phone are told of it."""

    rid: str
    samples: list[tuple[np.ndarray, int]]    # the answer's samples and their stamps
    old_id: int
    old_name: str
    new_id: int | None                       # None: withdrawn
    new_name: str
    made: bool                               # the change made the class
    revised: list[Revision]                  # pseudo-labels of the old class the corrected RCE labels otherwise


def journaled_name(class_id: int, name: str) -> bytes:
    """The name an answer's or a change's journal record keeps: a new class's name as taken (cleaned: taken again, it
    gives the same class), none for a known class, whose name the message may carry anyway (unchecked, any size)."""
    return name.encode("utf-8") if class_id == NEW_CLASS else b""


def kept_picture(img: np.ndarray, exact: bool = False) -> dict[str, Any]:
    """A question's picture as the labeler keeps it while the question waits or its group forms, in memory and in
    its state: compressed as ``images.picture_bytes`` decides (PNG for a plot, ``exact``, and a small picture; JPEG
    for a camera-size photo, not tried as PNG: this runs for every frame the frame cache compacts). Raw, the 200
    groups a camera can form held 184 MB of 640x480 frames, rewritten with the state at every checkpoint; every
    camera frame was kept as JPEG, and a 28x28 digit showed JPEG's specks on the phone (the app's own PNG of it kept
    them)."""
    data, kind = picture_bytes(img, exact, smallest=False)
    return {"height": img.shape[0], "width": img.shape[1], "encoding": "mono8" if img.ndim == 2 else "rgb8",
            "format": kind, "data": np.frombuffer(data, np.uint8)}


def shown_picture(pic: dict[str, Any]) -> dict[str, Any]:
    """A kept picture as a ``LabelRequest`` carries it (sensor_msgs/Image fields: raw pixels); one kept raw (a state
    from before pictures were compressed) as it is; {} for none."""
    if not pic or "format" not in pic:
        return pic
    img = decode_compressed(bytes(np.asarray(pic["data"], np.uint8)), str(pic["format"]))
    if pic.get("encoding") == "mono8":
        img = img[:, :, 0]
    return {"height": img.shape[0], "width": img.shape[1], "encoding": pic.get("encoding", "rgb8"),
            "step": img.shape[1] * (1 if img.ndim == 2 else 3), "data": img.ravel()}


#: the state part of the views a labeler last passed on to be learned (``learn_gate.RecentViews``)
VIEWS = "recent_views"


def restore_views(views: RecentViews, saved: dict[str, dict[str, Any]], log: Any) -> None:
    """The views remembered before the restart, so the view in front of the camera is not learned once more; a state
    from before they were kept has none (the ring starts empty), and a bad part is one line, not a lost state."""
    if VIEWS not in saved:
        return
    try:
        views.load_state_dict(saved[VIEWS])
    except TinyclError as exc:
        log.error("the views last learned were not restored (%s): the one in view may be learned once more",
                  str(exc).splitlines()[0])


def ask_policy(p: LabelerParams) -> AskPolicy | None:
    """The question policy of the parameters (None: the old one, LabelRequests' default)."""
    if p.ask_policy == "each":
        return None
    radius = p.dedupe_distance or p.group_radius_factor * p.rce_r_max
    return AskPolicy(radius, p.rce_metric, min_size=p.min_group, max_wait_s=p.group_wait_s, max_open=p.max_open,
                     max_per_hour=p.max_requests_per_hour, max_members=p.max_joined + 1, recent_s=p.recent_s,
                     lone_share=p.lone_share, recent_radius=p.recent_radius_factor * p.rce_r_max or None,
                     recent_agree=p.recent_agree)


class RceLabeler(Labeler):
    """TinyRCE labeler: covered → pseudo-label; unknown / ambiguous → a label request to a person."""

    def __init__(self, bus: Any, params: LabelerParams) -> None:  # not Labeler.__init__: no clusterer
        Node.__init__(self, bus, params)
        self.use_extractor(params.model)
        self._answers: OrderedDict[str, dict[str, Any]] = OrderedDict()   # answered requests that may change
        # what was just passed on to be learned: the same view again is passed on to be predicted only
        self.views = RecentViews(self.n_features, params.rce_repeat_factor * params.rce_r_max, params.rce_metric)
        self._unsaved_views: set[int] = set()    # serials of views passed on since the last checkpoint, not journaled
        self._not_learned = NotLearned(self.log)
        self.state = self.open_state("labeler", self._snapshot, journal=True)
        self._saved_undo: dict[str, Any] = {}
        self.load_state()
        self.undo = ReplayUndo(self.rce, params.undo_samples)
        self.passed = PassedOn(self.n_features, params.undo_samples)   # what a changed answer's prototypes labelled
        self._restore_answers()
        self.requests.set_names(params.class_names)
        self.frames = FrameCache(self._compact, raw_count=RAW_CACHE)
        self._warned_raw = False
        # a camera whose frames cannot be drawn (a depth topic, 32FC1) fails on every frame: said once, then once
        # a minute with a count, and once when a frame can be drawn again (as the extractor says the frames it
        # cannot take)
        self._bad_pictures = RepeatedFailure("keep a camera frame's picture for label requests", self.log,
                                             attempts="pictures")
        self._awaiting: dict[int, Pending] = {}         # requests whose picture has not arrived yet
        self._request_readers = 0
        self.LabeledFeatures, self.LabelRequest = bus.msg("LabeledFeatures"), bus.msg("LabelRequest")
        self.Features, self.ClassInfo = bus.msg("Features"), bus.msg("ClassInfo")
        self.Image, self.String = bus.msg("sensor_msgs/msg/Image"), bus.msg("std_msgs/msg/String")
        self.Header, self.Time = bus.msg("std_msgs/msg/Header"), bus.msg("builtin_interfaces/msg/Time")
        self.pub = bus.create_publisher("labeled", self.LabeledFeatures, "reliable")
        self.request_pub = bus.create_publisher("label_request", self.LabelRequest, "reliable")
        self.status_pub = bus.create_publisher("label_status", self.String, "reliable")
        self.unlearn_pub = bus.create_publisher("unlearn", self.LabeledFeatures, "reliable")
        self.downstream = [(self.pub, params.wait_for_subscribers)]
        # raw samples first: the executor serves subscriptions in this order, so when an image and
        # its features are both waiting the image is cached before a request needs its picture
        if params.image_transport == "compressed":     # one transport: a driver may publish both (image_transport)
            bus.create_subscription(bus.topic_name("image") + "/compressed", "sensor_msgs/msg/CompressedImage",
                                    self._on_raw_image, params.image_qos)
        else:
            bus.create_subscription("image", "sensor_msgs/msg/Image", self._on_raw_image, params.image_qos)
        bus.create_subscription("imu", "ImuWindow", self._on_raw_imu, params.image_qos)
        bus.create_subscription("features", "Features", self.on_features, "reliable")
        bus.create_subscription("label_answer", "LabelAnswer", self.on_answer, "reliable")
        bus.create_subscription("label_correction", "LabelAnswer", self.on_correction, "reliable")
        bus.create_subscription("rename_class", "LabelAnswer", self.on_rename, "reliable")
        self.renamed_pub = bus.create_publisher("class_renamed", self.ClassInfo, "reliable")
        self.ClassList = bus.msg("ClassList")
        self.classes_pub = bus.create_publisher("classes", self.ClassList, "latched")
        self._classes_sent: list[tuple[int, str, int]] | None = None
        self.closed_pub = bus.create_publisher("label_closed", self.String, "latched")
        self._closed_sent: list[dict[str, Any]] | None = None
        bus.create_timer(1.0, self._tick)
        relearned = self.state.replay(self._relearn)     # what it learned and grouped after that checkpoint
        if words := steady_wall.unshared_words():
            self.log.warning("%s", words)
        self.requests.not_after(steady_wall.now())       # times saved in an earlier boot's future
        self._awaiting.clear()                           # pictures that had not come before the kill: none will
        if self._answers:                                # from the checkpoint and the journal
            self.log.info("%d answer(s) from before the restart can still be changed (%d samples in the undo log)",
                          len(self._answers), len(self.undo.log))
        self._publish_classes()
        self.log.info("TinyRCE labeler: %d classes, %d prototypes, %d pending label requests%s",
                      len(self.rce.classes), self.rce.n_prototypes, len(self.requests.pending), journal_words(relearned))

    def _snapshot(self) -> dict[str, dict[str, Any]]:
        """The state a checkpoint writes; the views passed on so far are in it (none left to journal)."""
        self._unsaved_views.clear()
        return {"rce": self.rce.state_dict(), "requests": self.requests.state_dict(), "undo": self.undo.state_dict(),
                "answers": self._answers_state(), "passed_on": self.passed.state_dict(),
                VIEWS: self.views.state_dict()}

    def load_state(self) -> None:
        """The saved RCE and requests, or fresh ones (no file, or a bad one: moved aside)."""
        self._fresh()

        def apply(saved: dict[str, dict[str, Any]]) -> None:
            self._check_preset(saved)
            self.rce.load_state_dict(saved["rce"])
            self._saved_undo = {k: saved[k] for k in ("undo", "answers", "passed_on") if k in saved}
            if "requests" in saved:
                try:
                    self.requests.load_state_dict(saved["requests"], self.n_features)
                except TinyclError as exc:
                    self.log.error("pending label requests not restored (%s): the robot will ask again", exc)
            restore_views(self.views, saved, self.log)      # last: nothing after it can fail and leave it half-done

        if self.state.load(apply):
            self.log.info("restored state from %s", self.state.path)
        else:   # a bad file was moved aside: drop whatever it half-restored
            self._fresh()

    def _answers_state(self) -> dict[str, Any]:
        """The answers a person may still change: request id, group, class, samples (with stamps)."""
        meta, arrays = [], {}
        for i, (rid, a) in enumerate(self._answers.items()):
            meta.append({"request_id": rid, "gid": a["gid"], "class_id": a["class_id"], "class_name": a["class_name"],
                         "stamps": [int(ns) for _, ns in a["samples"]]})
            arrays[f"x{i}"] = np.stack([x for x, _ in a["samples"]]) if a["samples"] \
                else np.zeros((0, self.n_features), np.float32)
        return st.make_state("UndoableAnswers", 1, {}, arrays, {"answers": meta})

    def _restore_answers(self) -> None:
        """The undo log and the answers saved with the RCE: answers stay changeable across a restart."""
        saved, self._saved_undo = self._saved_undo, {}
        if not saved:
            return
        try:
            state = st.check_state(saved.get("answers"), "UndoableAnswers", 1)
            answers: OrderedDict[str, dict[str, Any]] = OrderedDict()
            for i, a in enumerate((state.get("meta") or {}).get("answers", [])):
                stamps = [int(ns) for ns in a["stamps"]]
                X = st.expect_shape(state, f"x{i}", (len(stamps), self.n_features)).astype(np.float32)
                answers[str(a["request_id"])] = {"gid": int(a["gid"]), "class_id": int(a["class_id"]),
                                                 "class_name": str(a["class_name"]), "samples": list(zip(X, stamps))}
            self.undo.load_state_dict(saved.get("undo"))
        except (TinyclError, KeyError, TypeError, ValueError) as exc:
            self.log.error("answers from before the restart cannot be changed any more (%s)",
                           str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return
        self._answers = answers
        if "passed_on" in saved:       # a state from before it has none: what it passed on is not taken back
            try:
                self.passed.load_state_dict(saved["passed_on"])
            except TinyclError as exc:
                self.log.error("pseudo-labels from before the restart will not be taken back with a changed answer "
                               "(%s)", str(exc).splitlines()[0])

    def _fresh(self) -> None:  # type: ignore[override]
        p = self.params
        self.rce = TinyRCE(self.n_features, memory_bytes=p.rce_memory_bytes, r_max=p.rce_r_max,
                           grow_margin=p.rce_grow_margin, metric=p.rce_metric, extractor_hash=self.hash)
        self.requests = LabelRequests(p.request_ttl_s, p.max_requests_per_hour, p.dedupe_distance,
                                      p.max_pending, p.max_joined, p.rce_metric, policy=ask_policy(p))

    # --- samples ------------------------------------------------------------------------------
    def _on_raw_image(self, msg: Any) -> None:
        self._remember(msg.header, "image", msg)

    def _on_raw_imu(self, msg: Any) -> None:
        self._remember(msg.header, "imu", msg)

    def _remember(self, header: Any, kind: str, msg: Any) -> None:
        """Keep raw samples to draw a request's picture until their features come (``FrameCache``); one too big to
        draw is not kept at all.

        A camera frame larger than any picture (a 1280x720 camera's raw frame is 2.8 MB) is reduced to its picture as it
        comes, one resize: kept raw, three would fill the cache (and none over 1 MB was kept: no picture at all)."""
        size = entry_bytes(kind, msg)
        if kind == "image" and size > MAX_PICTURE_BYTES:
            try:
                msg = camera_picture(msg, PICTURE_SIDE)
            except TinyclError as exc:      # the extractor says it for every such frame; here, once
                self._warn_raw_once(f"a camera frame cannot be shown in a label request: {exc}")
                return
            size = msg.nbytes
        if size > MAX_PICTURE_BYTES:
            self._warn_raw_once(f"raw {kind} of {size} bytes is too big to show in a label request: not kept "
                                f"(at most {MAX_PICTURE_BYTES} bytes)")
            return
        key = stamp_ns(header)
        self.frames.put(key, kind, msg)
        req = self._awaiting.pop(key, None)
        if req is not None and not req.picture:
            req.picture = self._picture(key)
            if req.picture and req.request_id in self.requests.pending:
                self._record_picture(req)
                self._send_request(req)                  # asked already: send it again with its picture
        if req is not None:
            self.frames.done(key)

    def _compact(self, stamp: int, entry: Entry) -> Entry | None:
        """A sample pushed out of the raw frames before its features came, as it is kept a while longer: a camera
        frame as its picture, a compressed one as it came (already small); an IMU window not (plotted only if asked)."""
        kind, raw = entry
        if kind != "image":
            return None
        if hasattr(raw, "format"):
            return entry
        picture = self._draw(stamp, entry)
        return ("picture", picture) if picture else None

    def on_features(self, msg: Any) -> None:
        try:
            self._on_sample(msg, steady_wall.now(), "")
        finally:
            if (key := stamp_ns(msg.header)) not in self._awaiting:
                self.frames.done(key)        # its picture taken if it needed one: the frame is not kept past the raw

    def _on_sample(self, msg: Any, now: float, request_id: str) -> None:
        """A sample: learned (labelled), passed on (covered) or offered to the questions at wall-clock ``now``, under
        ``request_id`` if it starts one (a new id if empty). Journaled with both before anything changes (but for a
        covered sample, which changes only the views passed on: a view is journaled once it is held,
        :meth:`_record_view`): learned again after a kill, it takes the same turns (:meth:`_relearn`)."""
        x = features_of(msg, self.n_features, self.hash, self.bound)
        if msg.labelled and msg.true_label >= 0:
            label = int(msg.true_label)
            self._record_sample(msg, now, "")
            self.undo.learn(x, label)
            self.views.remember(x)
            self._publish(msg, label, 1.0, self.LabeledFeatures.GROUND_TRUTH)
            self._count()
            return
        dec = self.rce.decide_valid(x)
        if not dec.wants_label and (held := self.views.match(x)) >= 0:   # covered, the view just passed on: predicted
            self._not_learned.note(LearnGate.REPEAT)
            if held in self._unsaved_views:    # held in view: journaled now, so that a restart does not pass it on
                self._unsaved_views.discard(held)    # again (:meth:`_record_view`)
                self._record_view(self.views.view(held))
            self._publish(msg, -1, self._covered(dec)[1], self.LabeledFeatures.PSEUDO)
            return
        if not dec.wants_label:        # covered: passed on, nothing learned here
            serial = self.views.remember(x)
            self._unsaved_views = {s for s in self._unsaved_views if s > serial - self.views.recent} | {serial}
            label, confidence = self._covered(dec)
            if any(a["class_id"] == label for a in self._answers.values()):   # a changed answer may take it back
                stamp = stamp_ns(msg.header)
                self._record_passed(x, stamp, label, confidence)
                self.passed.add(x, stamp, label, confidence)
            self._publish(msg, label, confidence, self.LabeledFeatures.PSEUDO)
            return
        request_id = request_id or str(uuid.uuid4())
        self._record_sample(msg, now, request_id, by_weight=True)
        outcome, req = self.requests.offer(x, now, stamp_ns=stamp_ns(msg.header), sample_id=int(msg.sample_id),
                                           reason=self._reason(dec), novelty=dec.novelty,
                                           guess=dec.nearest, request_id=request_id)
        if outcome == "recent" and req is not None and self.views.seen(x):   # that answer's view, again
            self._not_learned.note(LearnGate.REPEAT)
            self._publish(msg, -1, 0.0, self.LabeledFeatures.PSEUDO)
            return
        if outcome == "recent" and req is not None:      # alike to a group a person just answered
            label = int(req.extra["label"])              # type: ignore[attr-defined]
            rid = self._rid_of_group(req.gid)
            self.undo.learn(x, label, rid)
            self.views.remember(x)
            if rid in self._answers:
                self._answers[rid]["samples"].append((x.copy(), stamp_ns(msg.header)))
            self._publish(msg, label, 0.9, self.LabeledFeatures.PSEUDO)
            self._count()
            return
        self._publish(msg, -1, 0.0, self.LabeledFeatures.PSEUDO)   # predicted downstream, not learned
        if outcome in ("asked", "grouped") and req is not None:
            req.picture = self._picture(stamp_ns(msg.header))   # the sample shown, kept while the group forms
            if not req.picture:
                self._awaiting[req.stamp_ns] = req               # its image may still be on the way
                while len(self._awaiting) > RAW_CACHE and not self.state.replaying:   # never came: it says so
                    self._awaiting.pop(next(iter(self._awaiting)))
        elif outcome == "joined" and req is not None:
            self.log.debug("sample %d joins label request %s", msg.sample_id, req.request_id)
            if not req.picture:        # its first sample's was never kept, or not journaled before a kill: this one's
                req.picture = self._picture(stamp_ns(msg.header))
        else:
            self.log.debug("sample %d not asked about: request budget spent (%d this hour, %d pending)",
                           msg.sample_id, len(self.requests.asked_at), len(self.requests.pending))
        self._ask(now)

    # --- the journal (journal.py): what changed since the last checkpoint -------------------------
    def _record_sample(self, msg: Any, now: float, request_id: str, by_weight: bool = False) -> None:
        """A sample as it came (``by_weight``: one offered to the questions, which is learned only once a person
        answers: a checkpoint comes once such records weigh as much as the last, ``StateStore.record_by_weight``. Was:
        one within ``save_period_s``, the whole state with the waiting questions' pictures, 2.0-2.3 MB a minute while
        questions formed, docs/results.md. A group killed before that checkpoint or its question keeps no picture: the
        next sample that joins it gives one)."""
        payload = pack(b"sample", message_bytes(msg, "Features"), struct.pack("<d", now), request_id.encode())
        if by_weight:
            self.state.record_by_weight(payload)
        else:
            self.state.record(payload)

    def _record_view(self, x: np.ndarray | None) -> None:
        """A covered view passed on, recorded once the camera holds it (its first repeat): after a kill -9 the held
        view is a repeat still, not learned twice. Not each new view as it is passed on (a moving camera's every
        frame may be one), nor a checkpoint for it: the labeler wrote its whole state, up to 1.8 MB, every minute a
        camera moved (docs/results.md). A view killed before its first repeat is passed on once more."""
        if x is not None:
            self.state.record_by_weight(pack(b"view", np.asarray(x, "<f4").tobytes()))

    def _record_passed(self, x: np.ndarray, stamp: int, label: int, confidence: float) -> None:
        """A pseudo-label a changeable answer's prototypes gave (``PassedOn``): after a kill, a correction of that
        answer still takes it back from the learner, which journaled it as learned. By weight, as the questions'
        samples: a camera on an answered class passes one on each frame."""
        self.state.record_by_weight(pack(b"passed", np.asarray(x, "<f4").tobytes(),
                                         PASSED.pack(stamp, label, confidence)))

    def _record_picture(self, req: Pending) -> None:
        """A question's picture, once it is asked: the raw sample it was drawn from does not come again after a kill.
        Not while its group forms: most groups of a camera that shows something new expire unasked (their pictures were
        5.6 of a camera soak's 7.2 MB of journal, docs/results.md). A group that loses its picture to a kill shows the
        next sample that joins it (:meth:`_on_sample`). By weight, as the question it shows (:meth:`_ask`)."""
        if req.picture:
            meta = {k: v for k, v in req.picture.items() if k != "data"}
            self.state.record_by_weight(pack(b"picture", struct.pack("<q", req.stamp_ns), json.dumps(meta).encode(),
                                             np.asarray(req.picture["data"], np.uint8).tobytes()))

    def _relearn(self, payload: bytes) -> None:
        """One journal record again (``StateStore.replay``, at the start: nothing is published or asked)."""
        op, *parts = unpack(payload)
        if op == b"sample" and len(parts) == 3:
            self._on_sample(message_of(self.bus, "Features", parts[0]), struct.unpack("<d", parts[1])[0],
                            parts[2].decode())
        elif op == b"view" and len(parts) == 1 and len(parts[0]) == 4 * self.n_features:
            self.views.remember(np.frombuffer(parts[0], "<f4"))
        elif op == b"passed" and len(parts) == 2 and len(parts[0]) == 4 * self.n_features:
            self.passed.add(np.frombuffer(parts[0], "<f4"), *PASSED.unpack(parts[1]))
        elif op == b"ask" and len(parts) == 1:
            (now,) = struct.unpack("<d", parts[0])
            self.requests.expire(now)                  # as the tick that asked did first
            self.requests.ready(now)                   # the questions asked then, as they were
        elif op == b"skip" and len(parts) == 1:
            self.requests.skip(parts[0].decode())
        elif op == b"answer" and len(parts) == 3:
            class_id, now = ANSWER.unpack(parts[1])
            self._take_answer(self.requests.check_answer(parts[0].decode(), class_id, parts[2].decode(),
                                                         self.rce.classes, now), now)
        elif op == b"correct" and len(parts) == 3:
            self._correct(parts[0].decode(), *CLASS_ID.unpack(parts[1]), parts[2].decode("utf-8", "replace"))
        elif op == b"rename" and len(parts) == 2:
            self.requests.rename(*CLASS_ID.unpack(parts[0]), parts[1].decode("utf-8"), self.rce.classes)
        elif op == b"picture" and len(parts) == 3:
            (stamp,) = struct.unpack("<q", parts[0])
            req = self.requests.of_stamp(stamp)        # the replayed samples found no raw sample to draw
            if req is not None:
                req.picture = {**json.loads(parts[1]), "data": np.frombuffer(parts[2], np.uint8).copy()}
        else:
            raise StateError(f"journal record {op[:16]!r} with {len(parts)} parts is not the TinyRCE labeler's")

    def _ask(self, now: float) -> None:
        """Send the questions that are ready, journaled first: a question the phone shows is one the labeler knows
        after a kill, asked at the time it was (its deadline and the hour's budget count from it). The journal holds
        the samples of its group already (:meth:`_record_sample`), so the question is one record of its time, by
        weight: which groups are due then follows from them. Was: a checkpoint of the whole state at once, 1.2-2.2 MB
        a question (up to 3 GB a day at the default 60 an hour). While the journal is learned again nothing is sent:
        what it asks was asked before the kill, and the first tick sends the pending questions again."""
        ready = self.requests.ready(now)
        if self.state.replaying:       # asked before the kill: sent again to the phone by the first tick
            return
        if ready:
            self.state.record_by_weight(pack(b"ask", struct.pack("<d", now)))
        for req in ready:
            self._record_picture(req)
        if ready:
            self._send_requests(ready)
        for req in ready:    # once sent: the reason the phone got (before, the log gave its group's first, "I haven't
            # learned anything yet" after a class was taught, beside "I haven't seen anything like this" sent)
            self.log.info("label request %s: %s (%d alike samples)", req.request_id, req.reason,
                          self.requests.group_size(req))

    def _rid_of_group(self, gid: int) -> str:
        for rid, a in self._answers.items():
            if a["gid"] == gid:
                return rid
        return ""

    def _reason(self, dec: Any) -> str:
        """Why a person is asked, in plain words."""
        if dec.reason == AMBIGUOUS:
            a, b = (self._name(c) for c in dec.candidates[:2])
            return f"This looks like both {a} and {b}"
        if dec.reason == "empty":
            return "I haven't learned anything yet"
        return "I haven't seen anything like this"

    def _name(self, cid: int) -> str:
        return self.requests.names.get(int(cid), str(cid))

    def _warn_raw_once(self, text: str) -> None:
        if not self._warned_raw:
            self.log.warning("%s", text)
            self._warned_raw = True

    def _picture(self, stamp: int) -> dict[str, Any]:
        """The sample as a person can see it: the camera image, or the IMU window plotted over time
        with axes and units; {} when the raw sample has not arrived (yet: :meth:`_remember` fills it in)."""
        entry = self.frames.get(stamp)
        return self._draw(stamp, entry) if entry is not None else {}

    def _draw(self, stamp: int, entry: Entry) -> dict[str, Any]:
        kind, raw = entry
        try:
            if kind == "picture":
                return raw
            if kind == "image":   # any camera encoding, raw or JPEG/PNG → rgb8/mono8 the phone shows, in 640x640
                picture = kept_picture(raw if isinstance(raw, np.ndarray) else camera_picture(raw, PICTURE_SIDE))
                self._bad_pictures.landed()
                return picture
            if kind == "imu":
                w, h = self.params.picture_size
                n_ch = int(raw.n_channels)
                values = np.asarray(raw.data, np.float32)
                if n_ch < 1 or values.size % n_ch:
                    raise InputError(f"imu window of {values.size} values is not samples x {n_ch} channels")
                return kept_picture(render_plot(values.reshape(-1, n_ch).T, w, h, rate_hz=float(raw.rate_hz),
                                                names=[str(c) for c in raw.channel_names]), exact=True)
        except TinyclError as exc:
            if kind != "image":
                self.log.warning("cannot keep the picture of sample %d (%s): a label request about it is asked "
                                 "without one", stamp, exc)
            else:
                self._bad_pictures.failed(f"{exc}; a label request about such a frame is asked without its picture")
        return {}

    # --- requests and answers -----------------------------------------------------------------
    def _header(self, ns: int | None = None, frame: str = "") -> Any:
        if ns is None:
            return self.Header(stamp=self.bus.stamp(), frame_id=frame)
        return self.Header(stamp=self.Time(sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000), frame_id=frame)

    def _features_msg(self, req: Pending, i: int) -> Any:
        return self.Features(header=self._header(req.stamps[i]), data=as_sequence(req.samples[i], "f"),
                             extractor_hash=self.hash,
                             sample_id=req.sample_id if i == 0 else 0, true_label=-1, labelled=False)

    def _candidates(self, x: np.ndarray) -> list[int]:
        """Every class known now, the most likely for ``x`` first: the answer buttons."""
        order = np.argsort(-self.rce.predict_proba(x), kind="stable") if self.rce.classes else []
        return [self.rce.classes[int(i)] for i in order]

    def _send_request(self, req: Pending) -> None:
        try:
            pic = shown_picture(req.picture)
        except InputError as exc:
            self.log.warning("the picture kept for label request %s cannot be shown (%s): it is asked without it",
                             req.request_id, exc)
            pic = req.picture = {}
        picture = self.Image(header=self._header(req.stamp_ns), height=pic.get("height", 0), width=pic.get("width", 0),
                             encoding=pic.get("encoding", ""), is_bigendian=0, step=pic.get("step", 0),
                             data=as_sequence(pic.get("data", b""), "B"))
        # the class list first: the page shows a button's count from it, and one of the last tick lacked the samples
        # learned since (a button said "4 examples" of a question sent with 5)
        self._publish_classes()
        counts = self.rce.sample_counts()
        # as known when sent, not when the group began: a class a person taught meanwhile is one tap too, and the
        # reason is the RCE's now ("I haven't learned anything yet" was sent minutes after classes were learned);
        # a sample the classes taught since cover keeps its reason, the one it was asked for
        req.candidates = self._candidates(req.samples[0])
        if (now := self.rce.decide_valid(req.samples[0])).wants_label:
            req.reason = self._reason(now)
        candidates = [self.ClassInfo(id=c, name=self._name(c), sample_count=min(int(counts.get(c, 0)), 2**32 - 1))
                      for c in req.candidates]
        n = self.requests.group_size(req)
        reason = req.reason + (f" ({n} alike samples so far: your answer labels them all)" if n > 1 else "")
        if not pic:
            reason += " — no picture could be kept of this sample"
        self.request_pub.publish(self.LabelRequest(header=self._header(int(req.created * 1e9)),
                                                   request_id=req.request_id, picture=picture, candidates=candidates,
                                                   reason=reason, features=self._features_msg(req, 0)))

    def on_answer(self, msg: Any) -> None:
        rid = str(msg.request_id)
        if int(msg.class_id) == NO_CLASS:              # skipped / not sure: nothing is learned
            try:
                req = self.requests.skip(rid)
            except AnswerError as exc:
                self._status(rid, "refused", message=str(exc))
                self.log.error("label answer to %s refused: %s", rid[:64], exc)
                return
            # journaled, not checkpointed: nothing is learned (was: the whole state at once)
            self.state.record_by_weight(pack(b"skip", req.request_id.encode()))
            self._status(rid, "skipped")
            self.log.info("label request %s skipped (%s): %d sample(s) dropped", rid, str(msg.answered_by)[:40],
                          len(req.samples))
            return
        now = steady_wall.now()
        try:
            res = self.requests.check_answer(rid, int(msg.class_id), msg.new_class_name, self.rce.classes, now)
        except AnswerError as exc:
            self.requests.counters["refused"] += 1
            self._status(rid, "refused", message=str(exc))
            self.log.error("label answer to %s refused: %s", rid[:64], exc)
            return
        # journaled first, and fsynced: a person's label survives a power cut, as it did when each answer wrote the
        # whole state at once (up to 2.2 MB, docs/results.md); learned again after a restart (:meth:`_relearn`)
        self.state.record_durable(pack(b"answer", rid.encode(), ANSWER.pack(int(msg.class_id), now),
                                       journaled_name(int(msg.class_id), res.class_name)))
        self._take_answer(res, now)
        self._announce_answer(res, str(msg.answered_by))

    def _take_answer(self, res: Resolution, now: float) -> None:
        """What an accepted answer changes: its samples learned as its class, the question closed at ``now``, the
        answer kept changeable."""
        req = res.request
        for x in req.samples:
            self.undo.learn(x, res.class_id, req.request_id)
        self.requests.commit(res, now)
        self._answers[req.request_id] = {"gid": req.gid, "class_id": res.class_id, "class_name": res.class_name,
                                         "samples": [(x, s) for x, s in zip(req.samples, req.stamps)]}
        while len(self._answers) > MAX_UNDOABLE:
            self._answers.popitem(last=False)

    def _announce_answer(self, res: Resolution, by: str) -> None:
        """An answer taken: its samples to the learner, the verdict to the phone, the classes and open questions."""
        req = res.request
        for i in range(len(req.samples)):
            self.pub.publish(self.LabeledFeatures(header=self._header(), features=self._features_msg(req, i),
                                                  label=res.class_id, confidence=1.0,
                                                  source=self.LabeledFeatures.HUMAN, label_name=res.class_name))
        self._publish_classes()
        self._status(req.request_id, "learned", res.class_id, res.class_name, new_class=res.new_class)
        self.log.info("label request %s answered%s: class %d %r%s, %d sample(s) learned", req.request_id,
                      f" by {by}" if by else "", res.class_id, res.class_name, " (new class)" if res.new_class else "",
                      len(req.samples))
        if res.new_class:
            self._ask_again()

    def _ask_again(self) -> None:
        """The open questions sent again with what is known now (their reason, buttons and counts: a class was learned,
        taken back or renamed since they were sent): a question asked before anything was learned had no buttons, and
        said "I haven't learned anything yet", for as long as it stayed open. The phone redraws each card around what
        is being typed in it (label_app page)."""
        self._send_requests(self.requests.pending.values())

    def _send_requests(self, reqs: Iterable[Pending]) -> None:
        """Send ``reqs``. Once every open question has gone out, the readers matched before the sending are owed none:
        :meth:`_tick` sends them all again only to a reader matched later (a label app started after them). Was: the
        tick's count of readers, up to 1 s old, so a question asked just after a reader matched went to it twice."""
        readers = self.request_pub.get_subscription_count()     # before: a reader matched meanwhile is owed them
        reqs = list(reqs)
        for req in reqs:
            self._send_request(req)
        if {r.request_id for r in reqs} >= set(self.requests.pending):
            self._request_readers = readers

    @staticmethod
    def _covered(dec: Any) -> tuple[int, float]:
        """The pseudo-label and confidence of a sample the RCE covers."""
        return int(dec.label), float(max(0.0, 1.0 - dec.novelty))

    def _decision(self, x: np.ndarray) -> tuple[int | None, float]:
        """What the RCE labels ``x`` now: a covered sample's pseudo-label, or None (it would be asked about)."""
        dec = self.rce.decide_valid(x)
        return (None, 0.0) if dec.wants_label else self._covered(dec)

    def on_correction(self, msg: Any) -> None:
        """A person changed (class id / new name) or withdrew (NO_CLASS) an answer: the RCE replays
        without it, the learner is told to unlearn the samples (``unlearn``) and learns the new class; the
        pseudo-labels passed on lately as the old class that the corrected RCE labels otherwise are taken back too
        (and passed on with their new label): what the answer's prototypes labelled. Taken, it is a journal record,
        fsynced as an answer's is (was: the whole state at once, up to 2.2 MB, with the node waiting for it), and goes
        out after that: a kill -9 before the record lands loses the change before anything was said of it."""
        rid, cid, name = str(msg.request_id).strip(), int(msg.class_id), str(msg.new_class_name)
        try:
            fix = self._correct(rid, cid, name)
        except Refused as exc:
            self._status(rid, "refused", message=exc.said)
            raise
        self.state.record_durable(pack(b"correct", rid.encode(), CLASS_ID.pack(cid), journaled_name(cid, fix.new_name)))
        self._announce_correction(fix)

    def _correct(self, rid: str, cid: int, name: str) -> Correction:
        """What a change of the answer to ``rid`` changes here (the RCE, the undo logs, the asking policy's reach, the
        answer and the class names), or :class:`Refused` with nothing changed. Run again from the journal."""
        done = self._answers.get(rid)
        if done is None:
            raise Refused("the robot no longer holds this answer: it cannot be changed any more",
                          f"correction of label request {rid[:64]!r}: no such recent answer")
        if cid == NO_CLASS:
            new_id, new_name = None, ""
        elif cid == NEW_CLASS:
            try:
                new_id, new_name = self.requests.class_for_name(name, self.rce.classes)
            except AnswerError as exc:
                raise Refused(str(exc), str(exc)) from None
        elif cid in self.rce.classes or cid in self.requests.names:
            new_id, new_name = cid, self._name(cid)
        else:
            raise Refused(f"unknown class id {cid}", f"correction of {rid[:64]}: unknown class id {cid}")
        made = new_id is not None and new_id not in self.rce.classes and new_id not in self.requests.names
        try:
            self.undo.relabel(rid, new_id)
        except InputError as exc:   # its text names the request id (the undo log's tag): the person gets words
            raise Refused("the robot no longer keeps what it learned from this answer: it cannot be changed any more",
                          str(exc)) from None
        fix = Correction(rid, list(done["samples"]), done["class_id"], done["class_name"], new_id, new_name, made,
                         self.passed.revise(done["class_id"], self._decision))
        self.requests.policy.forget_answer(done["gid"], new_id)
        if new_id is None:
            del self._answers[rid]
        else:
            self.requests.names.setdefault(new_id, new_name)
            done["class_id"], done["class_name"] = new_id, new_name
        return fix

    def _announce_correction(self, fix: Correction) -> None:
        """A change taken: the learner unlearns the answer's samples and the pseudo-labels it revised (and learns
        their new labels), the phone gets the verdict, the classes and open questions."""
        for x, ns in fix.samples:
            self.unlearn_pub.publish(self.LabeledFeatures(
                header=self._header(), features=self._features_of(x, ns), label=fix.old_id, confidence=1.0,
                source=self.LabeledFeatures.HUMAN, label_name=fix.old_name))
            if fix.new_id is not None:
                self.pub.publish(self.LabeledFeatures(
                    header=self._header(), features=self._features_of(x, ns), label=fix.new_id, confidence=1.0,
                    source=self.LabeledFeatures.HUMAN, label_name=fix.new_name))
        for r in fix.revised:
            features = self._features_of(r.x, r.stamp_ns)
            self.unlearn_pub.publish(self.LabeledFeatures(
                header=self._header(), features=features, label=r.label, confidence=r.confidence,
                source=self.LabeledFeatures.PSEUDO, label_name=fix.old_name))
            if r.new_label is not None:
                self.pub.publish(self.LabeledFeatures(
                    header=self._header(), features=features, label=r.new_label, confidence=r.new_confidence,
                    source=self.LabeledFeatures.PSEUDO, label_name=self._name_of(r.new_label)))
        if fix.new_id is None:
            self._status(fix.rid, "withdrawn")
        else:
            self._status(fix.rid, "learned", fix.new_id, fix.new_name, new_class=fix.made)
        self._publish_classes()
        self._ask_again()
        self.log.info("answer to %s %s: %d sample(s) taken back from class %d, and %d pseudo-label(s) it had given",
                      fix.rid, "withdrawn" if fix.new_id is None else f"changed to class {fix.new_id} {fix.new_name!r}",
                      len(fix.samples), fix.old_id, len(fix.revised))

    def on_rename(self, msg: Any) -> None:
        """A person renames a class (``rename_class``: a LabelAnswer with the rename's own request id, the class
        and its new name). This node owns class names, so the verdict is said here only: on ``label_status``
        under that id (renamed, or refused with the reason: the phone shows it), and an accepted name on
        ``class_renamed`` (the learner and the app follow it). Taken, it is a journal record, fsynced (was: the whole
        state at once)."""
        rid, cid = str(msg.request_id), int(msg.class_id)
        try:
            name = self.requests.rename(cid, msg.new_class_name, self.rce.classes)
        except AnswerError as exc:
            self._status(rid, "refused", cid, message=str(exc))
            raise
        self.state.record_durable(pack(b"rename", CLASS_ID.pack(cid), name.encode("utf-8")))
        self.renamed_pub.publish(self.ClassInfo(id=cid, name=name, sample_count=0))
        self._publish_classes()
        self._status(rid, "renamed", cid, name)
        self._ask_again()       # their reasons name the class ("This looks like both 4 and 9"): in its new name
        self.log.info("class %d renamed %r%s", cid, name, f" by {str(msg.answered_by)[:40]}" if msg.answered_by else "")

    def _features_of(self, x: np.ndarray, ns: int) -> Any:
        return self.Features(header=self._header(ns), data=as_sequence(x, "f"), extractor_hash=self.hash,
                             sample_id=0, true_label=-1, labelled=False)

    @staticmethod
    def _verdict(rid: str, status: str, class_id: int = -1, class_name: str = "", message: str = "") -> dict[str, Any]:
        """One verdict as ``label_status`` and ``label_closed`` say it."""
        return {"request_id": rid[:MAX_REQUEST_ID], "status": status, "class_id": class_id, "class_name": class_name,
                "message": message}

    def _status(self, rid: str, status: str, class_id: int = -1, class_name: str = "", message: str = "",
                new_class: bool | None = None) -> None:
        """A verdict on ``label_status``; ``new_class``, with "learned": whether the answer made the class (the label
        app tags it "new": it cannot tell by the classes it has heard of, which may already list it)."""
        said = self._verdict(rid, status, class_id, class_name, message)
        self.status_pub.publish(self.String(data=json.dumps(said if new_class is None else {**said,
                                                                                           "new_class": new_class})))

    def _tick(self) -> None:
        """Every second: expire old requests, resend the pending ones to a new reader, ask the groups that are ready.
        (Not a save whenever something changed: the store checkpoints a change every ``save_period_s``. Saving here,
        with every sample passed on counted as a change, a camera graph's labeler wrote its whole state every second,
        waiting for each write: tests/nodes/test_labeler_checkpoints.py.)"""
        now = steady_wall.now()
        for req in self.requests.expire(now):
            self.log.info("label request %s expired unanswered (%d sample(s) dropped)", req.request_id,
                          len(req.samples))
            self._status(req.request_id, "expired")
            self.state.changed()
        readers = self.request_pub.get_subscription_count()
        if readers > self._request_readers and self.requests.pending:
            self._send_requests(self.requests.pending.values())
        self._request_readers = readers
        self._publish_closed()
        self._publish_classes()      # counts changed by samples learned meanwhile (labelled, or alike to an answer)
        self._ask(now)

    def _publish_closed(self) -> None:
        """The verdicts on the questions closed lately, on ``label_closed`` (latched, when they changed): a label app
        started again reads them, so a question answered or skipped elsewhere (``ros2 topic pub label_answer``, another
        phone) while it was down leaves its page instead of staying there until its time is up. An answer is said with
        its class as it stands (a change, a rename since); one no longer held (withdrawn, or past the last
        ``MAX_UNDOABLE``) is not. They were said again on ``label_status`` to each new reader of it: up to 200
        messages to every reader (``ros2 topic echo label_status`` saw them as if new) whenever one joined."""
        closed = []
        for rid, how in list(self.requests.closed.items())[-MAX_UNDOABLE:]:
            if how == "answered" and (a := self._answers.get(rid)) is not None:
                closed.append(self._verdict(rid, "learned", a["class_id"], self._name(a["class_id"])))
            elif how in ("skipped", "expired"):
                closed.append(self._verdict(rid, how))
        if closed != self._closed_sent:
            self.closed_pub.publish(self.String(data=json.dumps({"closed": closed})))
            self._closed_sent = closed

    def _publish_classes(self) -> None:
        """The classes this node knows, by its names and counts (the samples its RCE learned each from: the number a
        question's buttons say), on ``classes`` (latched) when they changed: the label app shows this list, so a
        class withdrawn, renamed or taught more is shown as the labeler knows it (the app counted the samples it saw
        on ``labeled``, the robot's own pseudo-labels too, and kept a class whose only answer was withdrawn)."""
        counts = self.rce.sample_counts()
        now = [(int(c), self._name(c), min(int(counts.get(c, 0)), 2**32 - 1)) for c in sorted(self.rce.classes)]
        if now == self._classes_sent:
            return
        self.classes_pub.publish(self.ClassList(header=self._header(), classes=[
            self.ClassInfo(id=c, name=n, sample_count=k) for c, n, k in now]))
        self._classes_sent = now

    # --- labelled output and state ------------------------------------------------------------
    def _name_of(self, label: int) -> str:
        return self.requests.names.get(label, "") if label >= 0 else ""

    def _count(self) -> None:
        self.state.learned()

    def _save(self) -> None:
        self.state.save()

    def status(self) -> Status:
        """Classes and prototypes known, and the questions a person has not answered yet."""
        return Status(values={"classes_known": str(len(self.rce.classes)), "prototypes": str(self.rce.n_prototypes),
                              "questions_pending": str(len(self.requests.pending))})

    def close(self) -> None:
        self._save()


def main(argv: list[str] | None = None) -> int:
    return run_node(Labeler, "labeler", argv)


if __name__ == "__main__":
    raise SystemExit(main())
