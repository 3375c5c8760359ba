"""learner node: labelled features → the active head; publishes predictions and the learned head.

For every sample it predicts first (prequential: the prediction the system would act on), then
learns the label if there is one (a pseudo-label, a person's answer, or ground truth). The head
is published on ``head`` (latched) every ``publish_every`` updates, at most every
``publish_period_s``, and at exit (``head_publisher.py``: the board's protocol too); its state
(``storage.StateStore``) is checkpointed every ``save_every`` samples / ``save_period_s``
seconds, before each block of published versions, at exit and on SIGTERM, and reloaded on restart; each message it
learns from between two checkpoints is journaled and learned again after a kill (``journal.py``, nothing published
twice); version numbers keep increasing across restarts. The first
``keep_labelled`` ground-truth samples it learns are kept in that state and latched on
``labelled_topic``: a labeler that lost its state recovers its clusters from them
(``labelled_set.py``).

In a fleet it also subscribes ``global_head`` (Head, ``bus.ROUNDS``: a learner that was down gets the last 16
rounds, in order; the mqtt_bridge publishes the aggregator's merged head there, ``version`` = the aggregation
round). A global head is checked
(``interfaces.heads.from_msg``: sizes, finiteness, unique ids, this node's extractor; then
``federated.check_snapshot``: kind, feature count, norm) — a bad one is one error line and
dropped — a round already merged is skipped, and the rest is merged into the local head by
``global_policy`` (``federated.merge_into_head``; ``blend`` by per-class counts, ``replace``, or
``add``: the statistics the bridge's exact mode hands over), after consolidating the pending batch
so nothing learned is lost. The merged head is published at once; the last merged round is saved
with the state. ``blend``/``replace`` need a CWR* head (presets ``tinyndc``, ``supervised``);
``add`` also takes streaming LDA (preset ``tinycl``; ``with_state``, the default, lets the bridge see
its statistics; see docs/fleet.md). The default ``auto`` is ``federated.fleet_policy`` of the head's
kind — ``add`` for streaming LDA, ``blend`` for CWR* — the same rule by which the bridge's default
``exact`` chooses its mode, so a graph and its bridge agree without settings.
"""

from __future__ import annotations

import logging

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from .. import presets
from ..core.errors import InputError, StateError
from ..core.federated import MAX_CLASSES, HeadSnapshot, check_merge, merge_into_head
from ..core.names import MAX_NAME_CHARS
from ..core.prior_worth import WEIGH_MAX, prior_meta, prior_taken, worth_words
from ..core.undo import ReplayUndo
from ..core.validation import check_label
from ..interfaces.heads import from_msg
from ..journal import pack, unpack
from ..storage import journal_words
from .diagnostics import Status
from .head_publisher import HeadParams, HeadPublisher
from .labelled_set import LabelledParams, LabelledSet
from .latent_join import LatentJoin
from .messages import check_labeled, check_texts, features_of, label_source, message_bytes, message_of, stamp_ns
from .runner import JournaledStateParams, ManagedParams, ModelPriorParams, Node, run_node

HEAD_PRESETS = {"tinyndc": presets.tinyndc_paper, "tinycl": presets.tinycl_best,
                "supervised": presets.supervised_cwr,
                # behind a TinyRCE labeler: nearest class mean learns a class from one answer
                "rce": lambda n, h: presets.TinyNDC(None, presets.HEADS["ncm"](n, h))}


def head_kind(preset: str) -> str:
    """The kind of the head a learner of ``preset`` runs (what a fleet of such learners aggregates)."""
    return HEAD_PRESETS[preset](1, "").head.kind


class LearnerParams(ManagedParams, JournaledStateParams, HeadParams, LabelledParams, ModelPriorParams):
    runtime_mutable = frozenset({"publish_every"})

    preset: Literal["tinyndc", "tinycl", "supervised", "rce"] = Field("tinycl",
                                                                     description="the head of this preset")
    model: str = Field("mnist_0to5_fp32", description="the extractor the features come from (hash + size)")
    latency_log: str | None = Field(None, description="write latency stats (capture → update, JSON in ms) here at "
                                                      "exit; None: not measured")
    global_topic: str = Field("global_head", description="the fleet's merged head (\"\" = not in a fleet)")
    global_policy: Literal["auto", "replace", "blend", "add"] = Field(
        "auto", description="how it is merged (core/federated.py); add: the bridge's exact mode (any preset); "
                            "auto: by the head's kind (streaming LDA add, CWR* blend), as the bridge")
    latent_head: bool = Field(False, description="learn presets.latent_upper (the model's upper layers + a "
                                                 "classifier) on the extractor's latents, not the preset's head; "
                                                 "pseudo-labels stay the preset's")
    latent_wait_s: float = Field(2.0, gt=0, description="latent_head: seconds a labelled sample waits for its latent "
                                                        "before it is dropped")
    min_confidence: float | None = Field(
        None, ge=0.0, le=1.0, description="pseudo-labels of labeler confidence below this are predicted, not learned "
                                          "(answers, ground truth always are); None: presets.pseudo_label_gate "
                                          "(LATENT_MIN_CONFIDENCE with latent_head, else 0)")


class Learner(Node):
    """A managed node: ``configure`` loads the head's state, ``cleanup`` saves it."""

    Params = LearnerParams
    managed = True

    def configure(self) -> None:
        params, bus = self.params, self.bus
        extractor = self.use_extractor(params.model)
        self.prior = self.use_model_prior(extractor)
        card = extractor.card
        made = (card.class_names or []) if self.prior is not None and card is not None else []
        #: the class each of the model's statistics is of (its card's train_classes → class_names)
        self._prior_names = {int(c): str(n) for c, n in zip(getattr(card, "train_classes", None) or range(len(made)),
                                                             made)}
        self._model_name, self._prior_name_said = extractor.path.name, False
        self.heads = HeadPublisher(self, lambda: (self.head, self.class_names, self._head_meta()))
        self.state = self.open_state("learner", self.state_dicts, journal=True)
        restored = self.load_state()
        self.latents = None
        self.min_confidence = params.min_confidence if params.min_confidence is not None else \
            presets.pseudo_label_gate(params.latent_head)
        if params.latent_head:   # learns on the activations at the cut, paired with each labelled sample
            self.latents = LatentJoin(self.on_labeled, self.head.n_features, self.hash, params.latent_wait_s, self.log,
                                      bound=extractor.latent_bound(presets.LATENT["cut"]))
            self.track(bus.create_subscription("latents", "Features", self.gated(self.latents.add_latent),
                                               "reliable"))
            self.track(bus.create_timer(params.latent_wait_s / 2, self.latents.expire))
        self.Prediction, self.HeadMsg = bus.msg("Prediction"), bus.msg("Head")
        self.pred_pub = self.track(bus.create_publisher("predictions", self.Prediction, "reliable"))
        for entity in self.labelled.advertise(bus, params.labelled_topic):
            self.track(entity)
        self.latencies: list[int] = []
        self.track(bus.create_timer(PRIOR_QUIET_S / 2, self._settle_if_quiet))
        self.track(bus.create_subscription("labeled", "LabeledFeatures", self.gated(self.on_labeled), "reliable"))
        # a person's answer changed or withdrawn: exact for heads that can unlearn, else a short replay
        self.replay = None if self.head.can_unlearn else ReplayUndo(self.head, 500)
        self.track(bus.create_subscription("unlearn", "LabeledFeatures", self.gated(self.on_unlearn), "reliable"))
        self.track(bus.create_subscription("class_renamed", "ClassInfo", self.on_renamed, "reliable"))
        # best effort: a name is on every sample, and a reliable reader killed with the learner would hold the
        # sensor's writes (and the extractor's ground truth) until its lease runs out
        self.track(bus.create_subscription("ground_truth", "GroundTruth", self.on_truth_name, "sensor_data"))
        if params.global_topic:
            self.track(bus.create_subscription(params.global_topic, self.HeadMsg, self.gated(self.on_global_head),
                                               "rounds"))
        relearned = self.state.replay(self._relearn)     # what it learned after that checkpoint
        if restored or relearned:
            self.log.info("restored head (%d classes, %d samples) from %s%s, head version %d", len(self.head.classes),
                          self.head.n_seen, self.state.path,
                          journal_words(relearned),
                          self.heads.version)
        super().configure()

    def _fresh(self) -> None:
        self.from_prior: bool | float = False     # the head started from the model's class statistics (saved):
        #                                           False, or the samples per class they count as (inf: all)
        self.prior_wait: PriorWait | None = None
        if self.params.latent_head:
            self.head = presets.latent_upper(self.params.model, extractor_hash=self.hash)
        else:
            system = HEAD_PRESETS[self.params.preset](self.n_features, self.hash)
            self.head = system.head
            if self.prior is not None and system.model_prior:
                # weighed by the labelled samples that start the stream (TinyNDC.init_from_labelled, as the
                # labeler's clusters): held until they are in, taken in _settle_prior
                self.prior_wait = PriorWait(system, LabelledSet(self.n_features, WEIGH_MAX))
        self.heads.reset()                        # version, stamp of the last label learned
        self.global_round = 0                     # the last global round merged (saved with the state)
        # class names: configured ones, then those learned (a person's new class, the fleet's) —
        # learned state, saved with the head
        self.class_names: dict[int, str] = dict(self.params.class_names)
        self.labelled = LabelledSet(self.n_features, self.params.keep_labelled)

    def load_state(self) -> bool:
        """The saved head, or a fresh one (no file, or a bad one: moved aside, whatever it half-restored dropped);
        whether it was restored."""
        self._fresh()
        if self.state.load(self._restore):
            if self.prior_wait is not None:
                self.log.info("the wait for the labelled samples that start the stream goes on: %d of them "
                              "restored from the state", len(self.prior_wait.held))
            return True
        self._fresh()
        if self.prior_wait is not None:
            self.log.info("the head will start from the model's class statistics, weighed by the labelled samples "
                          "that come first")
        return False

    def _restore(self, saved: dict[str, dict[str, Any]]) -> None:
        kind = saved.get("head", {}).get("kind")
        if kind != self.head.kind and presets.LatentUpperHead.kind in (kind, self.head.kind):
            raise StateError(f"it holds a {kind}, latent_head:={str(self.params.latent_head).lower()} needs a "
                             f"{self.head.kind}: the old state is kept aside; to go on with it, run with "
                             f"latent_head:={str(not self.params.latent_head).lower()}")
        if kind != self.head.kind:
            raise StateError(preset_switch(self.state.path, kind, self.head.kind, self.params.preset, HEAD_PRESETS,
                                           lambda f: f(1, "").head.kind))
        self.head.load_state_dict(saved["head"])
        meta = saved["head"]["meta"]
        self.heads.restore(meta)
        self.global_round = int(meta.get("global_round", 0))
        self.from_prior = prior_taken(meta.get("model_prior", False))
        self.class_names.update({int(k): str(v)[:MAX_NAME_CHARS] for k, v in (meta.get("class_names") or {}).items()})
        if "labelled" in saved:
            try:
                self.labelled.load_state_dict(saved["labelled"])
            except StateError as exc:     # the head is what was learned (these only restart a labeler): it was
                self.log.error("state file %s: its labelled samples cannot be used (%s): the head is restored "
                               "without them; %s", self.state.path, exc, self.state.keep_copy())   # set aside whole
        if meta.get("prior_wait"):
            # killed while it held the labelled samples: the wait goes on with all it held (learned without the
            # statistics if this start takes none, e.g. model_prior:=false now)
            wait = self.prior_wait or PriorWait(None, LabelledSet(self.n_features, WEIGH_MAX))
            wait.saved.load_state_dict(saved["held"])
            wait.held, wait.last = wait.saved.samples(self.bus), time.monotonic()
            self.prior_wait = wait
        else:
            self.prior_wait = None                # a saved head took the statistics in already, or never will

    def _head_meta(self) -> dict[str, Any]:
        """What the head's state carries besides the head, published and saved alike (``_restore`` reads it)."""
        return {"global_round": self.global_round, "model_prior": prior_meta(self.from_prior)}

    def state_dicts(self) -> dict[str, dict[str, Any]]:
        """What is saved: the head, the last published version, the last global round, class names, the labelled set,
        and during the wait for the statistics what it holds."""
        state = self.head.state_dict()
        state["meta"] |= {**self.heads.meta(), **self._head_meta(), "prior_wait": self.prior_wait is not None,
                          "class_names": {str(k): v for k, v in self.class_names.items()}}
        held = {} if self.prior_wait is None else {"held": self.prior_wait.saved.state_dict()}
        return {"head": state, "labelled": self.labelled.state_dict(), **held}

    def on_labeled(self, msg: Any, latent: np.ndarray | None = None) -> None:
        """A labelled sample: predicted, then learned (latent_head: on its latent, once that is in). What changes the
        node is journaled once checked, before it is learned: a checkpoint it brings about holds it."""
        if latent is None:            # (with its latent it comes again from the join: checked when it first came)
            check_labeled(msg)
        if self.latents is not None and latent is None:
            return self.latents.add_labeled(msg)
        x = features_of(msg.features, self.n_features, self.hash, self.bound) if latent is None else latent
        label = int(msg.label)
        if label != -1:
            check_label(label)
        if self.prior_wait is not None or self._learns(msg):      # held, or the wait ended by it, or learned
            self.state.record(pack(b"labeled", message_bytes(msg, "LabeledFeatures"),
                                   b"" if latent is None else np.asarray(latent, "<f4").tobytes()))
        if self.prior_wait is not None:
            if msg.source == msg.GROUND_TRUTH and label >= 0 and len(self.prior_wait.held) < WEIGH_MAX:
                self.prior_wait.hold(msg, x, label)
                self.state.learned()               # saved with the state: a kill -9 now loses none of it
                return
            self._settle_prior()
        self._predict_and_learn(msg, x, latent)

    def _learns(self, msg: Any) -> bool:
        """Whether a labelled sample's label is learned (a pseudo-label of too low a confidence is not)."""
        return int(msg.label) >= 0 and not (msg.source == msg.PSEUDO and float(msg.confidence) < self.min_confidence)

    def _relearn(self, payload: bytes) -> None:
        """Learn one journal record again (``StateStore.replay``, at the start: nothing is published)."""
        op, *parts = unpack(payload)
        if op == b"labeled" and len(parts) == 2:
            self.on_labeled(message_of(self.bus, "LabeledFeatures", parts[0]),
                            np.frombuffer(parts[1], "<f4").copy() if parts[1] else None)
        elif op == b"unlearn" and len(parts) == 2:
            self._unlearn(np.frombuffer(parts[0], "<f4").copy(), check_label(int(parts[1])))
        elif op == b"renamed" and len(parts) == 1:
            self.on_renamed(message_of(self.bus, "ClassInfo", parts[0]))
        elif op == b"settled" and not parts:
            self._settle_prior()
        else:
            raise StateError(f"journal: a record {op[:20]!r} of {len(parts)} parts is not the learner's")

    def _predict_and_learn(self, msg: Any, x: np.ndarray, latent: np.ndarray | None, held: bool = False) -> None:
        """Publish the prediction for ``x`` (not while the journal is replayed), then learn the label if it is to be
        learned (``held``: a sample the wait held, counted toward ``save_every`` when it came)."""
        label = int(msg.label)           # checked by on_labeled (a held sample's when it was held)
        if label != -1 and msg.label_name and self._room_for_name(label):
            self.class_names[label] = msg.label_name[:MAX_NAME_CHARS]   # a class the labeler named (a person's)
        predicted = self.head.predict_valid(x)  # exactly what the in-process loop predicts
        if predicted is None:
            cls, conf = -1, 0.0
        else:
            cls, conf = predicted, float(self.head.predict_proba(x)[self.head.classes.index(predicted)])
        if not self.state.replaying:
            self.pred_pub.publish(self.Prediction(header=msg.features.header, sample_id=msg.features.sample_id,
                                                  class_id=cls, class_name=self.class_names.get(cls, str(cls)),
                                                  confidence=conf))
        learn = self._learns(msg)
        if self.log.isEnabledFor(logging.DEBUG):
            conf_label = float(msg.confidence)
            self.log.debug("sample %d: predicted %d (%.3f); %s", msg.features.sample_id, cls, conf,
                           f"learned as {label} ({label_source(msg)}, confidence {conf_label:.3f})" if learn else
                           "not learned (no label)" if label < 0 else
                           f"not learned (pseudo-label {label} at confidence {conf_label:.3f}, below "
                           f"min_confidence {self.min_confidence})")
        if learn:
            if self.replay is not None:
                self.replay.learn(x, label)
            else:
                self.head.learn_valid(x, label)
            self.heads.learned(stamp_ns(msg.header))
            if msg.source == msg.GROUND_TRUTH:                # kept for a labeler: its features, not a latent
                self.labelled.add(msg, x if latent is None else
                                  features_of(msg.features, self.n_features, self.hash, self.bound), label)
            if not held:
                self.state.learned()
        if self.state.replaying:
            return
        if self.params.latency_log is not None and msg.source == msg.PSEUDO:
            # stream samples only: labelled init samples wait in the labeler by design
            self.latencies.append(time.time_ns() - stamp_ns(msg.features.header))
        self.heads.check()

    def on_unlearn(self, msg: Any) -> None:
        """Take a sample back (``unlearn``: the labeler after a person changed an answer). A pseudo-label is taken back
        only if it was learned: its confidence, as it came, passed ``min_confidence``."""
        check_labeled(msg)
        label = check_label(int(msg.label))
        if not self._learns(msg):
            self.log.debug("a pseudo-label of class %d at confidence %.3f to take back: never learned", label,
                           float(msg.confidence))
            return
        x = features_of(msg.features, self.n_features, self.hash) if self.latents is None else \
            self.latents.latent_of(msg.features)
        self._unlearn(x, label)         # first: what the head refuses (never learned) is not journaled
        self.state.record(pack(b"unlearn", np.asarray(x, "<f4").tobytes(), str(label).encode()))
        self.log.info("one sample of class %d taken back (a changed answer)", label)

    def _unlearn(self, x: np.ndarray, label: int) -> None:
        if self.replay is not None:
            self.replay.forget(x, label)
        else:
            self.head.unlearn_valid(x, label)
        self.heads.changed()

    def _room_for_name(self, label: int) -> bool:
        """Whether class ``label`` has a name or another may be kept: as many as a head has classes (the ground truth
        of 20,000 class ids, no head class among them, kept 20,000 names: 1.6 MB more in the state)."""
        return label in self.class_names or len(self.class_names) < MAX_CLASSES

    def _check_room_for_name(self, label: int) -> None:
        """InputError unless :meth:`_room_for_name`."""
        if not self._room_for_name(label):
            raise InputError(f"class {label}: {MAX_CLASSES} classes have a name already, as many as a head has: "
                             f"its name is not kept")

    def on_truth_name(self, msg: Any) -> None:
        """A replayed dataset's class names (an image folder's sub-folders) name the classes it teaches, so heads and
        exports carry them; a name a person or the parameters gave is kept."""
        label, name = int(msg.label), str(msg.class_name)[:MAX_NAME_CHARS]
        if 0 <= label <= 2**31 - 1 and name and label not in self.class_names:
            self._check_room_for_name(label)
            self.class_names[label] = name
        made = self._prior_names.get(label)
        if made is not None and name and made != name and not self._prior_name_said:
            self._prior_name_said = True
            self.log.warning("class %d of this stream is %r, but the class statistics of %s (model_prior) start it as "
                             "the model's class %r: the model was made on other classes; set model_prior:=false, or "
                             "train a backbone on these images (make train-frozen DATASET=<folder>)", label, name,
                             self._model_name, made)

    def on_renamed(self, msg: Any) -> None:
        """The labeler accepted a person's new name for a class: predictions and heads carry it."""
        class_id = check_label(int(msg.id))
        check_texts(msg)
        self._check_room_for_name(class_id)
        self.state.record(pack(b"renamed", message_bytes(msg, "ClassInfo")))
        self.class_names[class_id] = str(msg.name)[:MAX_NAME_CHARS]
        self.heads.changed()

    def on_global_head(self, msg: Any) -> None:
        """Merge the fleet's global head (one round once); a bad one raises: one line, dropped."""
        snap = global_snapshot(msg, self.hash)
        if snap.version <= self.global_round:
            self.log.debug("global head round %d already merged (at round %d): skipped", snap.version,
                           self.global_round)
            return
        check_merge(self.head, snap, self.params.global_policy)   # one refused changes nothing, not even the wait
        self._settle_prior()
        res = merge_into_head(self.head, snap, self.params.global_policy, self.class_names)
        if self.replay is not None:
            self.replay.reset()            # learned before the merge: no longer taken back by replay
        self.global_round = snap.version
        self.state.save()
        for reason in res.skipped:
            self.log.warning("global head round %d: %s", snap.version, reason)
        self.log.info("global head round %d merged (%s): %d classes, %d new: %s", snap.version,
                      res.policy, len(self.head.classes), len(res.imported),
                      ", ".join(n for _, n in res.imported) or "-")
        self.heads.publish(wait=True)      # the merged head at once

    def _settle_if_quiet(self) -> None:
        """(timer) End a wait whose labelled samples stopped coming ``PRIOR_QUIET_S`` ago."""
        if self.prior_wait is not None and self.prior_wait.held and \
                time.monotonic() - self.prior_wait.last >= PRIOR_QUIET_S:
            self.state.record(pack(b"settled"))
            self._settle_prior()

    def _settle_prior(self) -> None:
        """Take the model's class statistics in, weighed by the labelled samples held so far (the first message that
        is not one of them, a global head or the end ends the wait: TinyNDC.weigh_prior), then learn those."""
        if self.prior_wait is None:
            return
        system, held = self.prior_wait.system, self.prior_wait.held
        self.prior_wait = None
        X = np.stack([x for _, x, _ in held]) if held else np.zeros((0, self.n_features), np.float32)
        if system is not None and system.take_prior(system.weigh_prior(self.prior, X, [label for _, _, label in held])):
            self.from_prior = system.prior_samples
            self.log.info("the head starts from the model's class statistics (%d training images of classes %s; %s)",
                          int(self.prior.counts.sum()), sorted(self.prior.class_ids.tolist()),
                          worth_words(self.prior, system.prior_samples))
        for msg, x, _ in held:
            self._predict_and_learn(msg, x, None, held=True)

    def status(self) -> Status:
        """Classes known, samples learned and the head version published, on /diagnostics."""
        head = getattr(self, "head", None)      # a managed node has none until configured
        if head is None:
            return Status()
        return Status(values={"classes_known": str(len(head.classes)), "samples_learned": str(head.n_seen),
                              "head_version": str(self.heads.version)})

    def close(self) -> None:
        self._settle_prior()
        self.heads.close()
        self.state.save()
        if self.params.latency_log and self.latencies:
            lat = np.array(self.latencies, np.float64) / 1e6
            Path(self.params.latency_log).write_text(json.dumps({
                "n": int(lat.size), "p50_ms": float(np.percentile(lat, 50)), "p99_ms": float(np.percentile(lat, 99)),
                "max_ms": float(lat.max()), "mean_ms": float(lat.mean())}))


@dataclass
class PriorWait:
    """A fresh head's wait for the labelled samples that weigh the model's class statistics: it ends at the first
    message that is not one of them, a global head, the stop, ``PRIOR_QUIET_S`` without one, or WEIGH_MAX held (all
    that weigh the statistics). What it holds is saved with the state, so a kill -9 during the wait loses none."""

    system: Any                                   # the preset's TinyNDC (its weigh_prior / take_prior); None: no
    #                                               statistics to take, only the held samples to learn
    saved: LabelledSet                            # the held samples as saved (the state's "held" part)
    held: list = field(default_factory=list)      # (LabeledFeatures, features, label) of ground truth, in order
    last: float = 0.0                             # time.monotonic() of the last one

    def hold(self, msg: Any, x: np.ndarray, label: int) -> None:
        """Hold a ground-truth sample (``x`` its checked features) until the wait ends."""
        self.held.append((msg, x, label))
        self.saved.add(msg, x, label)
        self.last = time.monotonic()


PRIOR_QUIET_S = 2.0          # a stream of ground truth alone (no pseudo-label ever follows) is not held longer


def preset_switch(path: Any, saved: Any, wanted: str, preset: str, presets: dict[str, Any],
                  kind_of: Any) -> str:
    """What to do when a state file holds another preset's state (one line)."""
    others = [name for name, make in presets.items() if name != preset and kind_of(make) == saved]
    back = f"run with preset:={others[0]} and move it back to {path.name}" if others else "it is of no preset here"
    return (f"it holds a {saved} (preset {' or '.join(others) or '?'}), preset {preset} needs a {wanted}: "
            f"the old state is kept aside; to go on with it, {back}")


def global_snapshot(msg: Any, extractor_hash: str) -> HeadSnapshot:
    """A received global ``Head`` as a snapshot, after ``interfaces.heads.from_msg``'s checks (raises if bad);
    streaming-LDA statistics from its state blob."""
    return from_msg(msg, extractor_hash, "global")


def main(argv: list[str] | None = None) -> int:
    return run_node(Learner, "learner", argv)


if __name__ == "__main__":
    raise SystemExit(main())
