"""mqtt_bridge node: the device's learned head out to the fleet, the fleet's merged head back in.

Bus side (in the device namespace, e.g. ``/robot1/tinycl``):

- subscribes ``head`` (Head, latched) — what the learner publishes after updates;
- publishes ``global_head`` (Head, ``bus.ROUNDS``: the last 16 kept for a learner that was down; the additions no
  learner head holds yet are saved and handed again after a restart) — the fleet's merged head; the learner merges it
  with its own (policy: ``tinycl_nodes.core.federated.merge_global``). Its ``version`` is the
  aggregation round.

MQTT side (paho-mqtt 2.x, MQTT 5, TLS + client certificate + password, see ``fleet/link.py``):

- publishes ``tinycl/<fleet>/<device>/head`` (QoS 1, retained, payload ``fleet/payload.py``)
  when the head changed enough — a class was added or removed, ``min_new_samples`` more samples
  were consolidated, or the weights moved by ``min_change`` (relative Frobenius norm) — but not
  more often than every ``min_interval_s``; and every ``period_s`` if it changed at all;
- subscribes ``tinycl/<fleet>/global`` (retained): a valid payload of a newer round is
  republished on the bus; a bad one is one error line and dropped.

With ``exact`` (docs/fleet.md, "Rounds for weeks") the bridge keeps a
:class:`~tinycl_nodes.core.federated.FleetMember`: it shares only the device's own learning
(without ``opt_out`` classes) and republishes, instead of the global head, the statistics the
learner must *add* to take the round in (learner and labeler ``global_policy: add``), of either sign: samples that
left the fleet (a device removed, a peer's un-learning) are taken out. By default
(``exact`` unset) the mode follows the kind of the learner's first head, by the rule the learner's
``global_policy: auto`` follows too (``federated.fleet_policy``): exact for streaming LDA (preset
``tinycl``, which can only be merged exactly), a global head to blend for CWR*. A global head
that arrives before the first local head waits for it.

Every head carries the device's lineage id, drawn once when the bridge's state (``mqtt_bridge.state``, any mode) is
created and kept with it: the aggregator tells a robot's heads after a wipe from a broker's stale copies by it, not
by the robot's clock (docs/fleet.md, "A robot that lost its state").

While the broker is unreachable the latest head is kept and sent on reconnect (persistent
session, reconnect with backoff); an older unsent head is superseded, not queued.

    python -m tinycl_nodes.nodes.mqtt_bridge --ros-args -r __ns:=/robot1/tinycl \
        -p fleet:=lab -p device:=robot1 -p broker_dir:=/var/lib/tinycl/broker

``broker_dir`` (the broker directory of ``tinycl fleet setup`` or a device's bundle from it) fills the TLS files and the
password of ``device`` from there; explicit ``mqtt_*`` parameters override it.
"""

from __future__ import annotations

import queue
import re
import threading
import time
from typing import Any, Callable

import numpy as np
from pydantic import Field

from ..bus import ROUNDS
from ..core.errors import TinyclError
from ..core.federated import FleetMember, HeadSnapshot, Moments, fleet_policy
from ..core.prior_worth import prior_taken, weighed
from ..core import state as st
from ..core.state import from_bytes
from ..fleet.broker import global_topic, head_topic
from ..fleet.link import MqttLink, MqttNodeParams, MqttParams, mqtt_params
from ..interfaces.heads import from_msg, to_msg
from ..model_prior import load_prior, shipped_prior
from ..fleet.payload import DEFAULT_MAX_BYTES, LINEAGE_RE, PROBE, FleetName, decode, encode, new_lineage
from .diagnostics import Status, link_status
from .runner import Node, StateParams, run_node


#: seconds between two warnings that no learner head arrived
LEARNER_REPEAT_S = 300.0


class BridgeParams(MqttNodeParams, StateParams):
    device: FleetName = Field(description="this device's name: its MQTT identity and topic "
                                          "tinycl/<fleet>/<device>/head")
    head_topic: str = Field("head", description="bus topic of the learner's head (Head) shared with the fleet")
    global_topic: str = Field("global_head", description="bus topic the fleet's merged head is published on "
                                                         "(latched)")
    extractor_hash: str = Field("", description="if set, heads / global heads of another extractor are refused")
    model: str = Field("", description="the learner's model (name or .onnx path) when its class statistics are not "
                                       "among the package's models (\"\": found by the head's extractor hash)")
    period_s: float = Field(30.0, gt=0, le=86400, description="seconds between checks that send the latest head if "
                                                              "it changed at all")
    min_interval_s: float = Field(1.0, ge=0, le=86400, description="seconds at least between two sends on a "
                                                                   "change")
    min_change: float = Field(0.05, ge=0, description="send when the weights moved this much (relative Frobenius "
                                                      "norm)")
    min_new_samples: int = Field(50, ge=1, description="send when this many more samples were consolidated")
    max_bytes: int = Field(DEFAULT_MAX_BYTES, ge=1024, le=64 << 20,
                           description="largest payload sent or accepted (bytes)")
    poll_s: float = Field(0.05, gt=0, le=5, description="how often received global heads are handed to the bus")
    exact: bool | None = Field(None, description="share only this device's own learning, hand the learner what to "
                                                 "add (learner/labeler global_policy add or auto); unset: by the "
                                                 "learner's head kind (streaming LDA exact, CWR* not)")
    opt_out: list[int] = Field(default_factory=list, description="exact mode: class ids learned here but never "
                                                                 "shared with the fleet")
    learner_wait_s: float = Field(30.0, gt=0, le=86400, description="warn when no head of the learner came this "
                                                                    "long after start (again every 5 minutes)")


    def mqtt(self) -> MqttParams:
        return mqtt_params(self, self.device)


class MqttBridge(Node):
    Params = BridgeParams

    def __init__(self, bus: Any, params: BridgeParams, start: bool = True,
                 clock: Callable[[], float] = time.time) -> None:
        """``clock``: the wall clock a head's ``sent_at`` is read from (a test sets it back as a board without RTC
        has it after a reflash)."""
        super().__init__(bus, params)
        self.clock = clock
        self.Head = bus.msg("Head")
        self.ClassInfo = bus.msg("ClassInfo")
        self._lock = threading.RLock()
        self.latest: HeadSnapshot | None = None      # latest head seen on the bus
        self.sent: HeadSnapshot | None = None        # latest head handed to MQTT
        self._sent_at = -1e18
        self._offered: tuple[int, int] | None = None   # (head version, round) of the latest payload offered
        self._shared: HeadSnapshot | None = None        # the snapshot it carried
        self.global_round = 0                        # latest global round handed to the bus
        self._handed = 0                             # exact mode: latest round handed with an addition (saved)
        self._unheld: list[HeadSnapshot] = []        # the additions handed that no head holds yet, oldest first
                                                     # (saved: handed again after a restart)
        self._handed_at = 0.0                        # when (monotonic)
        self._head_round: int | None = None          # the round the latest head had taken in (None: not said)
        self._lag_said = 0                           # the handed round a lagging learner was warned about
        self.heads_sent = 0
        self.globals_received = 0
        self._inbox: "queue.Queue[HeadSnapshot]" = queue.Queue(maxsize=ROUNDS.depth)   # version = round
        self.exact: bool | None = params.exact          # None until the learner's first head decides
        self._waiting: bytes | None = None              # a global payload that came before that head
        self._deferred: bytes | None = None             # the latest global payload, while ROUNDS.depth are unheld
        self.member: FleetMember | None = None
        self._kept_member: dict[str, Any] | None = None  # exact:=false: the exact mode's bookkeeping, kept as it is
        self.lineage = ""                                # this state's life (fleet/payload.py: new_lineage)
        self._top = 0                                    # the highest learner head version seen in it
        if self.exact is not False:     # the bookkeeping survives restarts (else own learning is recounted)
            self.member = FleetMember(params.device, params.opt_out)
        self.state = self.open_state("mqtt_bridge", self._states)   # the lineage id in any mode
        saved = self.state.load(self._restore)
        if saved is not None and "member" in saved and self.member is not None:
            self.exact = True                           # it was exact before: it stays so
            self.log.info("fleet bookkeeping restored from %s (%d report(s) kept)", self.state.path,
                          len(self.member.reported))
        elif self.exact is None:
            self.member = None
        if not self.lineage:            # a new life of this device (no state, or one of a build before lineages)
            self.lineage = new_lineage()
            self.state.save()           # before any head carries it: a restart goes on with the same id
            self.log.info("lineage %s: a new life of %s's state (%s)", self.lineage, params.device, self.state.path)
        self.out_topic = head_topic(params.fleet, params.device)
        self.in_topic = global_topic(params.fleet)
        self.link = MqttLink(params.mqtt(), f"tinycl-{params.fleet}-{params.device}", [self.in_topic],
                             self._on_mqtt, self.log)
        self.global_pub = bus.create_publisher(params.global_topic, self.Head, ROUNDS)
        if self._unheld:
            self._hand_again(self._unheld)
        bus.create_subscription(params.head_topic, self.Head, self._on_head, "latched")
        bus.create_timer(params.period_s, self._on_period)
        bus.create_timer(params.poll_s, self.poll)
        self._started_at, self._warned_at = time.monotonic(), None
        bus.create_timer(params.learner_wait_s, self._check_learner)
        if start:
            self.link.start()

    def _states(self) -> dict[str, Any] | None:
        with self._lock:
            states: dict[str, Any] = {"bridge": st.make_state("MqttBridge", 1, {}, {}, {"lineage": self.lineage,
                                                                                      "top": self._top})}
            if self.member is None:
                if self._kept_member is not None:
                    states["member"] = self._kept_member
                return states
            member = self.member.state_dict()
            member["meta"]["global_round"] = self.global_round   # a round already handed over is not again
            member["meta"]["handed"] = self._handed
            for add in self._unheld:                              # accounted as added: each must reach the learner
                key = "handed" if add is self._unheld[-1] else f"handed.{add.version}"
                states[key] = (add.moments or Moments.of(add)).state_dict()
                states[key]["meta"].update(round=add.version, kind=add.kind, extractor_hash=add.extractor_hash)
        return {**states, "member": member}

    def _restore(self, saved: dict[str, Any]) -> None:
        """The lineage id (a file of a build before it has none: a new one is drawn) and exact mode's bookkeeping."""
        if "bridge" in saved:
            meta = st.check_state(saved["bridge"], "MqttBridge", 1)["meta"]
            lineage, top = meta.get("lineage"), meta.get("top", 0)
            if not isinstance(lineage, str) or not lineage or not re.fullmatch(LINEAGE_RE, lineage):
                raise TinyclError(f"state: lineage {lineage!r} is not a lineage id")
            if isinstance(top, bool) or not isinstance(top, int) or top < 0:
                raise TinyclError(f"state: top {top!r} is not a head version")
            self.lineage, self._top = lineage, top
        if "member" not in saved:
            return
        if self.member is None:                         # exact:=false: not used, not lost either
            self._kept_member = saved["member"]
            return
        meta = saved["member"]["meta"]
        rnd, handed = meta.get("global_round", 0), meta.get("handed", 0)
        for name, value in (("global_round", rnd), ("handed", handed)):
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= max(rnd, 0):
                raise TinyclError(f"state: {name} {value!r} is not a round number (up to global_round)")
        earlier = sorted((int(k.split(".", 1)[1]), k) for k in saved if re.fullmatch(r"handed\.\d{1,12}", k))
        unheld = [self._saved_addition(saved[k], rnd_k) for rnd_k, k in earlier if rnd_k < handed]
        if len(unheld) != len(earlier) or ("handed" not in saved and earlier):
            raise TinyclError(f"state: the additions handed over are not of rounds before round {handed}")
        if "handed" in saved:
            unheld.append(self._saved_addition(saved["handed"], handed))
        self.member.load_state_dict(saved["member"])
        self.global_round, self._handed, self._unheld = rnd, handed, unheld

    def _saved_addition(self, state: dict[str, Any], handed: int) -> HeadSnapshot:
        """The addition of round ``handed`` as saved (``_states``), read back as a learner reads it off the bus."""
        mom = Moments.from_state_dict(state)
        meta = state["meta"]
        if meta.get("round") != handed or not isinstance(meta.get("kind"), str) or \
                not isinstance(meta.get("extractor_hash"), str) or not mom.finite():
            raise TinyclError(f"state: the addition handed over is not round {handed}'s, or malformed")
        snap = mom.snapshot(meta["kind"], meta["extractor_hash"], handed, 0, self.params.device)
        snap.moments = mom
        return snap

    def _hand_again(self, unheld: list[HeadSnapshot]) -> None:
        """After a restart: the additions handed over that no head held yet are published again, in order. Accounted
        as added when they were handed, they may not have reached the learner (killed, or the learner down, before
        it took them in: its head then lacked the rounds for good, the bridge reported that head and kept a share
        short by them, negative in the others' classes); a learner that took one in skips it (a round is merged
        once)."""
        self._handed_at = time.monotonic()
        for add in unheld:
            self._inbox.put_nowait(add)
        self.log.info("the addition of round %s handed to the learner again (handed before this restart; a learner "
                      "that took one in skips it)", ", ".join(str(a.version) for a in unheld))

    # --- bus → MQTT ---------------------------------------------------------------------------
    def _on_head(self, msg: Any) -> None:
        snap = from_msg(msg, device=self.params.device)
        eh = self.params.extractor_hash
        if eh and snap.extractor_hash != eh:
            raise TinyclError(f"head v{snap.version} built on extractor {snap.extractor_hash[:12]}, this device "
                              f"runs {eh[:12]}: not shared")
        if snap.n_classes and not (np.isfinite(snap.weights).all() and np.isfinite(snap.bias).all()):
            raise TinyclError(f"head v{snap.version} contains NaN or inf: not shared")
        self._check_life(snap.version)
        waiting = self._decide_mode(snap.kind)
        meta = from_bytes(bytes(msg.state)).get("meta", {}) if self.member is not None and len(msg.state) else None
        self._take_baseline(meta, snap)
        head_round = self._merged_round(meta, snap.version)
        with self._lock:
            self.latest, self._head_round = snap, head_round
            if head_round is not None and self._unheld and self._unheld[0].version <= head_round:
                self._unheld = [a for a in self._unheld if a.version > head_round]   # the learner holds them:
                self.state.changed()                                                 # not handed again
            deferred = None
            if self._deferred is not None and len(self._unheld) < ROUNDS.depth:   # room again: the round waits no more
                deferred, self._deferred = self._deferred, None
            merged = self._merged_only(snap)
            if merged:
                self.sent = snap                   # nothing of its own to share: not sent, not by the period either
            due = not merged and self._changed_enough(snap) and \
                time.monotonic() - self._sent_at >= self.params.min_interval_s
        if merged:
            self.log.debug("head v%d: round %d blended in, nothing learned since: acknowledged", snap.version,
                           self.global_round)
            self._offer(None)
        if due:
            self._send()
        for payload in (waiting, deferred):
            if payload is not None:
                self._on_mqtt(self.in_topic, payload)

    def _check_life(self, version: int) -> None:
        """The learner's head versions only grow, across its restarts too: a lower one than this state has seen is a
        learner whose state was lost (deleted, or moved aside unreadable) while this bridge's was kept. Its heads
        would carry the id of the earlier life, below the version the aggregator holds of it: taken for a broker's
        stale copies, forever. So a new lineage starts here too, as for a robot wiped whole: a new id, and exact
        mode's bookkeeping and the last round handed over, which were of the earlier life, start afresh."""
        with self._lock:
            if version >= self._top:
                if version > self._top:
                    self._top = version
                    self.state.changed()
                return
            top, self._top = self._top, version
            self.lineage = new_lineage()
            if self.member is not None:
                self.member = FleetMember(self.params.device, self.params.opt_out)
            self._kept_member, self.global_round, self._handed, self._unheld = None, 0, 0, []
            self._deferred = None
            self.sent = self._shared = self._offered = None
        self.state.save()               # before any head carries the new id
        self.log.warning("the learner's head v%d is below the v%d it published before: its state was lost (this "
                         "bridge's was kept); lineage %s: a new life of %s, its earlier one stays in the fleet's "
                         "rounds",
                         version, top, self.lineage, self.params.device)

    def _merged_only(self, snap: HeadSnapshot) -> bool:
        """Blend mode: ``snap`` is the learner's head after blending a round in, with nothing learned since the head
        last shared (same ``n_seen``). Shared as a new head it started another round, whose blend started the next:
        a round every ``min_interval_s`` forever, each doubling the fleet's counts (a trial: 3,000 samples counted as
        13 billion after 24 rounds in 5 minutes). The last head shared is sent again with the round instead: the
        aggregator notes the round as merged and starts none for it, as in exact mode."""
        sent, offered = self.sent, self._offered
        return (self.exact is False and sent is not None and offered is not None and snap.n_seen == sent.n_seen
                and self.global_round > offered[1])

    @staticmethod
    def _merged_round(meta: dict[str, Any] | None, version: int) -> int | None:
        """Exact mode: the last round the learner had taken in when it published this head (``global_round`` in its
        state's meta, ``learner._head_meta``); None when the head carries no state (nothing to tell it by)."""
        if meta is None:
            return None
        rnd = meta.get("global_round", 0)
        if isinstance(rnd, bool) or not isinstance(rnd, int) or rnd < 0:
            raise TinyclError(f"head v{version}: its state's global_round {rnd!r} is not a round number: not shared")
        return rnd

    def _lags(self) -> bool:
        """Exact mode: the latest head does not hold yet the latest addition handed to the learner (a head published
        before the learner took that round in, still on its way). Its own learning computed from it is short by the
        addition, negative in the fleet's classes; such a report was sent clipped at 0 while kept unclipped as the
        device's share in the next global head, so the next addition counted the fleet's samples again (a round of 700
        samples ran on to 1,300). Such a head is not reported: the one that holds the round is."""
        return self._head_round is not None and self._head_round < self._handed  # lock held

    def _take_baseline(self, meta: dict[str, Any] | None, snap: HeadSnapshot) -> None:
        """A learner whose head started from its model's class statistics (its state's ``model_prior``): exact mode
        shares only what it learned (``FleetMember.baseline``), so the statistics are found here by the model."""
        if self.member is None or self.member.baseline is not None or meta is None:
            return
        taken = prior_taken(meta.get("model_prior"))
        if taken is False:
            return
        prior = load_prior(self.params.model, snap.extractor_hash) if self.params.model else \
            shipped_prior(snap.extractor_hash)
        if prior is None:
            raise TinyclError(f"head v{snap.version} started from its model's class statistics, which this bridge "
                              f"cannot find (give it the learner's model:=): not shared")
        with self._lock:
            self.member.baseline = Moments.of(weighed(prior, taken))

    def _decide_mode(self, kind: str) -> bytes | None:
        """With ``exact`` unset, the first head's kind decides the mode (once; a later head of a kind
        that needs the other mode is refused). Returns a global payload that waited for it."""
        with self._lock:
            if self.params.exact is None and self.exact is not None and kind:
                if (fleet_policy(kind) == "add") != self.exact:
                    # exact mode keeps its bookkeeping file, and a restart reads it back: exact again
                    fix = (f"its saved bookkeeping {self.state.path} keeps it so: delete that file (or set "
                           f"exact:=false) and restart it" if self.exact else "restart it")
                    raise TinyclError(f"the learner's head is now a {kind}: this bridge runs in "
                                      f"{'exact' if self.exact else 'blend'} mode, {fix}; not shared")
            if self.exact is not None or not kind:
                return None
            self.exact = fleet_policy(kind) == "add"
            if self.exact:
                self.member = FleetMember(self.params.device, self.params.opt_out)
            waiting, self._waiting = self._waiting, None
        self.log.info("fleet mode: %s (the learner's head is a %s)", "exact, the learner adds each round"
                      if self.exact else "the learner blends the global head", kind)
        return waiting

    def _changed_enough(self, snap: HeadSnapshot) -> bool:
        old = self.sent
        if old is None:
            return True
        if old.keys != snap.keys or old.n_features != snap.n_features:
            return True
        if int(snap.counts.sum()) - int(old.counts.sum()) >= self.params.min_new_samples:
            return True
        ref = float(np.linalg.norm(old.weights)) or 1.0
        return float(np.linalg.norm(snap.weights - old.weights)) / ref >= self.params.min_change

    def _check_learner(self) -> None:
        """A learner on another host that this bridge's DDS does not reach (no ``dds_config``: loopback) sends
        nothing and no error anywhere: say so, once and then every ``LEARNER_REPEAT_S``."""
        now = time.monotonic()
        if self.latest is not None or now - self._started_at < self.params.learner_wait_s or \
                (self._warned_at is not None and now - self._warned_at < LEARNER_REPEAT_S):
            return
        self._warned_at = now
        self.log.warning("no head from the learner on %s for %.0f s: is the learner running in this namespace, "
                         "and reachable on the bus (the same dds_config:= / CYCLONEDDS_URI and ROS_DOMAIN_ID as "
                         "the learner's host)?", self.bus.topic_name(self.params.head_topic),
                         now - self._started_at)

    def _on_period(self) -> None:
        self._check_lag()
        self.link.recheck_ending()
        with self._lock:
            s, latest = self.sent, self.latest
        if latest is not None and (s is None or s.version != latest.version or s.keys != latest.keys):
            self._send()

    def _check_lag(self) -> None:
        """A learner that refused a round's addition (one error line in its log) never publishes a head holding it,
        so this device's learning is not shared any more: say so once per round, ``learner_wait_s`` after it."""
        with self._lock:
            lags = self._lags() and self._lag_said != self._handed and \
                time.monotonic() - self._handed_at >= self.params.learner_wait_s
            if lags:
                self._lag_said = self._handed
            rnd, head_round, version = self._handed, self._head_round, self.latest.version if self.latest else 0
        if lags:
            self.log.warning("the learner has not taken round %d in (its head v%d holds round %d) %.0f s after it was "
                             "handed over: did it refuse it (see its log)? This device's heads are not shared until "
                             "one holds it", rnd, version, head_round, self.params.learner_wait_s)

    def _send(self) -> None:
        with self._lock:
            snap = self.latest
            if snap is None:
                return
            if self.member is not None and self._lags():
                self.log.debug("head v%d not reported: it holds round %d, round %d's addition is not in it yet",
                               snap.version, self._head_round, self._handed)
                return                            # not ``sent``: the next head (or the period) reports
            self.sent = snap
            self._sent_at = time.monotonic()
            if self.member is not None:           # exact mode: only this device's own learning
                try:
                    snap = self.member.report(snap, snap.version)
                except TinyclError as exc:
                    self.log.error("head v%d not shared: %s", snap.version, exc)
                    return
                self.state.save()                 # a report the aggregator may use is never forgotten
        self._offer(snap)

    def _offer(self, snap: HeadSnapshot | None) -> None:
        """Hand ``snap`` to MQTT with the latest round taken in; None: the last one again if that round is newer
        (not the latest head seen: it may not hold the round the learner is adding yet, exact mode would
        account the difference as unlearned)."""
        with self._lock:
            snap = self._shared if snap is None else snap
            rnd = self.global_round
            if snap is None or (snap.version, rnd) == self._offered:
                return                            # the same head and round again (exact mode, nothing new)
            self._shared, self._offered = snap, (snap.version, rnd)
        payload = encode(snap, self.params.fleet, self.params.device, rnd, self.clock(), opt_out=self.params.opt_out,
                         lineage=self.lineage)
        if len(payload) > self.params.max_bytes:
            self.log.error("head v%d is %d bytes, over max_bytes %d: not shared", snap.version, len(payload),
                           self.params.max_bytes)
            return
        self.link.offer(self.out_topic, payload, retain=True)
        self.heads_sent += 1

    def flush(self) -> None:
        """Hand the latest head to MQTT now, whatever changed (e.g. before shutting down)."""
        self._send()

    # --- MQTT → bus ---------------------------------------------------------------------------
    def _on_mqtt(self, topic: str, data: bytes) -> None:   # paho's thread
        if topic != self.in_topic:
            return
        if data == PROBE:         # `tinycl fleet check --identity aggregator --publish …/global`: no head, no error
            self.log.debug("a probe of `tinycl fleet check` on the global topic: ignored")
            return
        try:
            meta, snap = decode(data, max_bytes=self.params.max_bytes, fleet=self.params.fleet,
                                extractor_hash=self.params.extractor_hash or None)
        except TinyclError as exc:
            self.log.error("global head refused: %s", exc)
            return
        with self._lock:
            if meta.round <= self.global_round:
                return                                   # a re-delivery of a round we have
            if self.exact is None:                       # the learner's first head decides the mode
                self._waiting = data
                return
            if self.member is not None and len(self._unheld) >= ROUNDS.depth:
                if self._deferred is None:           # said once until the learner catches up
                    self.log.warning("global head round %d waits: the learner has not taken the last %d rounds in "
                                     "(rounds %d-%d; is it running?); taken in once it holds them", meta.round,
                                     len(self._unheld), self._unheld[0].version, self._unheld[-1].version)
                self._deferred = data                # a learner that got only the newest would lack the rest
                return
            if self.member is not None:
                if self.latest is None:
                    self.log.warning("global head round %d: no local head yet, taken in at the next round",
                                     meta.round)
                    return
                try:                                     # what the learner adds: the others' new learning
                    snap = self.member.delta(self.latest, snap, meta.provenance.get(self.params.device))
                except TinyclError as exc:
                    self.log.error("global head round %d refused: %s", meta.round, exc)
                    return
            self.global_round = meta.round
            # exact mode: an addition (samples to add, or to subtract: its ``moments``) or nothing new from the
            # others (the usual round), taken in by adding nothing. The learner and labeler never see that (they
            # refuse a head without classes); the aggregator learns the round was taken in from the head sent again
            # with it (its version unchanged: no new round)
            brings = snap.n_classes > 0 or snap.moments is not None
            snap.version = meta.round
            if self.member is not None and brings:
                self._handed, self._handed_at = meta.round, time.monotonic()
                self._unheld.append(snap)
            if self.member is not None:
                self.state.save()                        # the round and the bookkeeping, together
            ack = self.member is not None and not brings
        if ack:
            self.log.debug("global head round %d: nothing new from the other devices, taken in", meta.round)
            self._offer(None)
            return
        try:
            # exact mode: an addition must reach the learner (it is accounted as added): wait for room
            self._inbox.put(snap, timeout=10.0) if self.member is not None else self._inbox.put_nowait(snap)
        except queue.Full:
            self.log.warning("global head round %d dropped: the bus is not keeping up", meta.round)

    def poll(self) -> None:
        """Publish received global heads on the bus (runs in the bus thread, from a timer)."""
        while True:
            try:
                snap = self._inbox.get_nowait()
            except queue.Empty:
                return
            self.global_pub.publish(to_msg(snap, self.Head, self.ClassInfo, self.bus.stamp()))
            self.globals_received += 1
            if snap.moments is None:
                self.log.info("global head round %d (%d classes, %d samples of the fleet's) handed to the learner",
                              snap.version, snap.n_classes, int(snap.counts.sum()))
                continue
            n = np.rint(snap.moments.n)
            gone = [f"{-int(c)} of {k[1]}" for k, c in zip(snap.moments.keys, n) if c < 0]
            out = (f", {int(-n[n < 0].sum())} to take out ({', '.join(gone)}: a device removed, or a peer's "
                   f"un-learning)" if gone else "")
            self.log.info("global head round %d handed to the learner: %d samples to add%s", snap.version,
                          int(n[n > 0].sum()), out)

    def status(self) -> Status:
        """The fleet link on /diagnostics (``link_status``), the heads shared and the global rounds handed over."""
        st = link_status(self.link)
        st.values.update({"lineage": self.lineage, "heads_shared": str(self.heads_sent),
                          "head_version_shared": str(self._shared.version) if self._shared is not None else "none",
                          "global_rounds_received": str(self.globals_received),
                          "global_round": str(self.global_round)})
        return st

    def close(self) -> None:
        self.link.stop()
        if self.state is not None:
            self.state.save()


def main(argv: list[str] | None = None) -> int:
    return run_node(MqttBridge, "mqtt_bridge", argv)


if __name__ == "__main__":
    raise SystemExit(main())
