"""The fleet aggregator: device heads in, a versioned global head out (``tinycl aggregate``).

It subscribes ``tinycl/<fleet>/+/head`` (QoS 1, persistent session) and keeps the latest valid
head of every device. A head is refused — one warning line naming the device and the reason, the
aggregator keeps running — if its payload is malformed, oversized, of another schema version,
of another fleet, built on another extractor, carries NaN/inf or an absurd norm, comes from a
device not allowed, claims another device than its topic, or differs in kind / feature count
from the fleet's. An older or equal version of a device's head than the one held is ignored (an equal one
with a later ``round`` notes that the device took that round in: its bridge's acknowledgement, no new round), but
for a *rollback*: an older version of another lineage id (the bridge's, drawn when its state was created; a head
without one: sent after the held head, a broker's stale retained copy was sent before it) is a new lineage of that
device, whose state was wiped (new SD card, reflashed; its clock, without RTC, may say 1970). The held head is then
kept as a *retired lineage* of the device — merged into every later round as a device that stopped sending is, so
nothing already learned leaves the fleet — and the new head is the device's current one. Retired lineages are saved
with the state, shown by ``tinycl fleet status`` and dropped with their device when it is no longer allowed.

The fleet's extractor hash, feature count and head kind are configured (``model``, or
``extractor_hash`` + ``n_features``; ``kind``) and saved with the state: no sender decides them.
A round closes when ``min_new_heads`` new heads arrived since the last round (or
``round_timeout_s`` after the first one: stragglers' previous heads are used), at least
``min_devices`` devices are known and ``min_interval_s`` passed since the last round: the latest
heads of all known devices, without the classes each opted out of, are aggregated (``fedavg`` by
per-class counts | ``median`` | ``trimmed_mean``; SLDA statistics exactly, see
``core/federated.py``) and published retained on ``tinycl/<fleet>/global`` with ``round`` = the
round number (also the global head's version) and ``provenance`` (each device's head version in
it). One line per round is logged and the per-round table (devices, stragglers, classes,
samples, accuracy as the devices report it) is published retained on ``tinycl/<fleet>/rounds``.

State (round, the fleet's configuration, every device's latest payload, the last global
payload, the round table) is kept by ``storage.StateStore`` in ``<state_dir>/aggregator.state``:
saved after every round, at most every ``save_interval_s`` after accepted heads (a head not saved
yet is not lost: it is retained on the broker and delivered again after a restart), on close, and at the start while
it holds nothing (``tinycl fleet status`` then says round 0; such a state of another configuration is replaced);
on restart it is loaded, the last global head is offered again, and the held heads the last global
head does not contain (its provenance) count as new for the round under way (they came before the
restart). A corrupt file is moved aside with one line (one of another fleet or configuration stops the
aggregator) and the aggregator starts fresh, from the round the broker holds: its retained global head, which the
first round of a run waits for (robots skip a round numbered at or below the one they merged); without one, from the
round most devices' heads say they merged. Held heads of devices not in ``allowed_devices`` (a device revoked since)
are dropped at start and a round without them closes at once.

Run: ``tinycl aggregate --broker-dir DIR --fleet F [--method median] [--state-file PATH]``, or
as a node on the bus (``python -m tinycl_nodes.fleet.aggregator --ros-args -p fleet:=F ...``),
which also publishes the global head on the bus topic ``global_head`` (latched).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from typing import Any, Literal

import numpy as np
from pydantic import Field

from ..arg_types import count, number
from ..core.errors import OtherConfigError, TinyclError
from ..core.federated import (
    DEFAULT_MAX_NORM,
    MAX_FEATURES,
    HeadSnapshot,
    RefusedHead,
    aggregate,
    check_snapshot,
)
from ..nodes.diagnostics import Status, link_status
from ..nodes.learner import LearnerParams, head_kind
from ..nodes.runner import Node, run_node, validate
from ..core import state as st
from ..storage import RepeatedFailure, StateStore
from .broker import AGGREGATOR, global_topic, head_topic, rounds_topic
from .link import MqttLink, MqttNodeParams, mqtt_params
from .payload import DEFAULT_MAX_BYTES, PROBE, FleetName, PayloadMeta, decode, encode

STATE_KIND = "aggregator"
#: 2: retired lineages (``retired/<device>/<i>``). Version 1 files are read (:func:`saved_state`): those of the release
#: before lineages have none, those of the release that added them under version 1 have them, in the same layout.
STATE_VERSION = 2



class AggregatorParams(MqttNodeParams):
    identity: FleetName = Field(AGGREGATOR, description="MQTT username / certificate name")
    method: Literal["fedavg", "median", "trimmed_mean"] = Field(
        "fedavg", description="how the device heads are merged: fedavg by per-class counts | median | trimmed_mean")
    trim: float = Field(0.2, ge=0.0, lt=0.5, description="trimmed_mean: fraction of the smallest and of the largest "
                                                         "values dropped per coordinate")
    min_count: int = Field(0, ge=0, description="a device's class row takes part only with at least this many "
                                                "samples (0: every row)")
    min_devices: int = Field(1, ge=1, description="a round needs at least this many devices with a head")
    min_new_heads: int = Field(1, ge=1, description="a round needs this many new heads since the last round")
    min_interval_s: float = Field(1.0, ge=0, description="seconds at least between two rounds")
    round_timeout_s: float = Field(0.0, ge=0, description="close a round this many seconds after its first new "
                                                          "head even if fewer than min_new_heads arrived "
                                                          "(stragglers: their previous head is used; 0: wait)")
    wait_say_s: float = Field(60.0, gt=0, description="a round waiting this many seconds for its heads says whom it "
                                                     "waits for (once per round)")
    rounds_kept: int = Field(100, ge=1, le=100000, description="rounds kept in the published per-round table")
    max_norm: float = Field(DEFAULT_MAX_NORM, gt=0, description="a head whose weight norm exceeds this is refused "
                                                                "(absurd norm)")
    max_bytes: int = Field(DEFAULT_MAX_BYTES, ge=1024, le=64 << 20,
                           description="largest head payload accepted (bytes)")
    model: str = Field("", description="the fleet's frozen extractor (model name or .onnx path): its hash and "
                                       "feature count are the fleet's (or give extractor_hash and n_features)")
    extractor_hash: str = Field("", max_length=128, description="the fleet's extractor hash (empty: model's); heads "
                                                                "of another extractor are refused")
    n_features: int = Field(0, ge=0, le=MAX_FEATURES, description="the fleet's feature count (0: model's); heads "
                                                                  "of another size are refused")
    kind: str = Field(default_factory=lambda: head_kind(LearnerParams.model_fields["preset"].default),
                      min_length=1, max_length=64, description="the head kind the fleet aggregates (default: the "
                                                               "learner's default preset's, StreamingLDA)")
    allowed_devices: list[FleetName] | None = Field(None, description="devices whose heads are accepted (None: any "
                                                                      "the broker admits)")
    state_dir: str = Field("", description="folder of aggregator.state (round, device heads, global head, round "
                                           "table; storage.StateStore); empty: no persistence")
    save_interval_s: float = Field(1.0, ge=0, le=3600, description="accepted heads are saved at most this often "
                                                                   "(seconds)")
    tick_s: float = Field(0.1, gt=0, le=10, description="seconds between checks whether a round is due")
    bus_topic: str = Field("global_head", description="as a node: bus topic the global head is published on "
                                                      "(latched)")




def saved_state(saved: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The aggregator's part of a saved state, as this build's version: a version 1 file is read as it is (the layout
    is the same; retired lineages, if any, are kept); one of a newer release stops the aggregator (OtherConfigError,
    the file stays: moved aside, the fleet's rounds began again at 1 under the older build)."""
    state = saved.get(STATE_KIND)
    version = state.get("version") if isinstance(state, dict) else None
    if isinstance(version, int) and not isinstance(version, bool) and version > STATE_VERSION:
        raise OtherConfigError(f"it is an aggregator state of version {version}, written by a newer release; this "
                               f"build reads versions 1 to {STATE_VERSION}: run the release that wrote it")
    if version == 1:
        state = {**state, "version": STATE_VERSION}
    return st.check_state(state, STATE_KIND, STATE_VERSION, ("global",))


def fleet_extractor(p: AggregatorParams) -> tuple[str, int]:
    """The fleet's extractor hash and feature count: from the configuration, never from a sender."""
    eh, nf = p.extractor_hash, p.n_features
    if p.model:
        from ..extractor import FrozenExtractor, model_path
        ext = FrozenExtractor(model_path(p.model))
        if (eh and eh != ext.hash) or (nf and nf != ext.n_features):
            raise TinyclError(f"aggregator: model {p.model} has extractor {ext.hash[:12]} / {ext.n_features} "
                              f"features, but extractor_hash / n_features say {eh[:12]} / {nf}")
        eh, nf = ext.hash, ext.n_features
    if not eh or not nf:
        raise TinyclError("aggregator: configure the fleet's extractor (model, or extractor_hash and n_features); "
                          "the first head received no longer decides it")
    return eh, nf


class Aggregator:
    """MQTT side and rounds; thread-safe (messages come from paho's thread, ``tick`` from the caller)."""

    def __init__(self, params: AggregatorParams, logger: logging.Logger | None = None,
                 on_global: Any = None, start: bool = True, state_option: str = "state_dir") -> None:
        """``state_option``: what the user gives to use another state folder, as it was started (the node's parameter
        ``state_dir``, ``tinycl aggregate --state-dir``): a second aggregator on one state file is told that."""
        self.p = params
        self.log = logger or logging.getLogger("tinycl.aggregator")
        self.on_global = on_global
        self._lock = threading.Lock()
        self.round = 0
        self.extractor_hash, self.n_features = fleet_extractor(params)
        self.heads: dict[str, HeadSnapshot] = {}
        self.payloads: dict[str, bytes] = {}
        self.global_payload: bytes = b""
        self.global_head: HeadSnapshot | None = None
        self.provenance: dict[str, int] = {}        # the global head's: each device's head version in it
        self.fresh: set[str] = set()
        self.metas: dict[str, PayloadMeta] = {}
        # per device, when this aggregator last took a head of it (its own wall clock: a device's sent_at is its own
        # clock's, days off on a robot whose clock is): what `tinycl fleet status` says as "last heard"
        self.heard: dict[str, float] = {}
        # per device, the last heads of its earlier lineages (state wiped since), oldest first: merged in every round
        self.retired: dict[str, list[tuple[PayloadMeta, HeadSnapshot, bytes]]] = {}
        self.rounds: list[dict[str, Any]] = []
        self._first_fresh_t: float | None = None
        self._wait_said = False         # the round under way said once whom it waits for
        self._refusals: dict[str, RepeatedFailure] = {}    # per device: its refused heads, said once a minute
        self.refused = 0
        self.accepted = 0
        self.last_refusal = ""
        self._last_round_t = -1e18
        # the first round of this run waits for the broker's retained global head (the fleet's last round) or
        # RESUME_WAIT_S after the connection; without a broker link (start=False) none can come
        self._round_known = not start
        self._connected_t: float | None = None
        self.store = (StateStore(params.state_dir, STATE_KIND, self.log, self._states, every_s=params.save_interval_s,
                                 option=state_option, elsewhere=state_option) if params.state_dir else None)
        if self.store is not None and self.store.load(self._restore):
            self.log.info("state loaded from %s: round %d, %d device head(s), new since round %d: %s", self.store.path,
                          self.round, len(self.heads), self.round, ", ".join(sorted(self.fresh)) or "none")
        if self.store is not None and self._holds_nothing():
            # saved now, not at the first head: `tinycl fleet status` of a running aggregator says round 0, no device
            # yet, instead of "has the aggregator run there?". The round the broker holds still wins (the first round
            # of a run waits for it whatever the state says)
            self.store.save()
        self.removed = self._drop_not_allowed()
        self.prefix = f"tinycl/{params.fleet}/"
        # the global topic first: mosquitto sends its retained head before the devices' (each subscription's
        # retained messages follow its acknowledgement)
        self.link = MqttLink(mqtt_params(params, params.identity), f"tinycl-{params.fleet}-{params.identity}",
                             [global_topic(params.fleet), head_topic(params.fleet, "+")], self.on_message, self.log)
        if self.global_payload:
            self.link.offer(global_topic(params.fleet), self.global_payload, retain=True)
        if start:
            self.link.start()

    def _holds_nothing(self) -> bool:
        """No round, no head, no retired lineage: a state that is saved or replaced loses nothing learned."""
        return self.round == 0 and not self.heads and not self.retired and not self.global_payload

    def _drop_not_allowed(self) -> list[str]:
        """Held heads of devices no longer in ``allowed_devices`` (e.g. revoked) leave the fleet: they were kept
        in every round after a restart. The next round is closed without them at once."""
        if self.p.allowed_devices is None:
            return []
        gone = sorted((set(self.heads) | set(self.retired)) - set(self.p.allowed_devices))
        for d in gone:                  # its retired lineages too: removal takes all of the device's learning out
            for held in (self.heads, self.payloads, self.metas, self.retired, self.heard):
                held.pop(d, None)
            self.fresh.discard(d)
        if gone:
            self.log.warning("device(s) %s not allowed any more: their held heads and retired lineages are left out "
                             "from the next round on", ", ".join(gone))
            if self.store is not None:
                self.store.changed()
        return gone

    # --- receiving ------------------------------------------------------------------------------
    def on_message(self, topic: str, data: bytes) -> None:
        if topic == global_topic(self.p.fleet):
            self._on_broker_global(data)
            return
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != "tinycl" or parts[1] != self.p.fleet or parts[3] != "head":
            return
        device = parts[2]
        if data == PROBE:             # `tinycl fleet check --publish` proving the device may write its topic
            self.log.debug("a probe of tinycl fleet check on %s's head topic: no head, ignored", device)
            return
        said = self._refusals.get(device)
        try:
            self.accept(device, data)
        except TinyclError as exc:
            if said is None:      # a device sending the same bad head every second (another model:=), the retained
                said = self._refusals[device] = RepeatedFailure(f"take {device}'s heads", self.log, "heads")
            said.failed(str(exc))                     # its copy at each reconnect: one line, then once a minute
            self.last_refusal = f"head from {device} refused: {exc}"     # said before counted: a waiter sees both
            self.refused += 1
            return
        if said is not None:
            said.landed()

    def accept(self, device: str, data: bytes) -> bool:
        """Validate and store one device head; raise TinyclError with the reason if refused."""
        p = self.p
        if p.allowed_devices is not None and device not in p.allowed_devices:
            raise RefusedHead(f"device {device!r} is not allowed in this fleet")
        meta, snap = decode(data, max_bytes=p.max_bytes, fleet=p.fleet, extractor_hash=self.extractor_hash)
        if meta.device != device:
            raise RefusedHead(f"payload claims device {meta.device!r} on {device}'s topic")
        with self._lock:
            check_snapshot(snap, extractor_hash=self.extractor_hash, max_norm=p.max_norm,
                           allowed_devices=p.allowed_devices, n_features=self.n_features if snap.n_classes else None,
                           kind=p.kind)
            old = self.heads.get(device)
            held = self._meta_of(device) if old is not None else None
            retired = self.retired.get(device, ())
            if meta.lineage:            # its life's id: a wiped robot's clock may be anything (no RTC: near 1970)
                copy = held is not None and meta.lineage != held.lineage and any(meta.lineage == m.lineage
                                                                                for m, _, _ in retired)
                lineage = held is not None and snap.version < old.version and meta.lineage != held.lineage
            else:                       # a build without lineage ids: its clock tells (sent after the held head)
                copy = any(snap.version <= r.version and meta.sent_at <= m.sent_at for m, r, _ in retired)
                lineage = held is not None and snap.version < old.version and meta.sent_at > held.sent_at
            if copy:
                # a late copy of a retired lineage's head (a queued delivery): taken, it would replace the new lineage
                self.log.debug("head from %s v%d: a copy of a retired lineage's head: ignored", device, snap.version)
                return False
            if lineage:
                self._retire(device, snap.version, meta.lineage)
            elif old is not None and snap.version <= old.version:
                if snap.version < old.version:      # e.g. mosquitto restarted on an autosave older than that
                    self.log.debug("head from %s v%d: a copy of an older head (sent before the v%d held; the "
                                   "broker's retained copy?): ignored", device, snap.version, old.version)
                elif meta.round > self._meta_of(device).round:
                    # the same head sent again by a device that took a later round in (its bridge's
                    # acknowledgement): the round it merged is noted, no new round for it
                    self.metas[device], self.payloads[device] = meta, data
                    self.heard[device] = time.time()
                    if self.store is not None:
                        self.store.changed()
                    self.log.debug("head from %s v%d: round %d taken in", device, snap.version, meta.round)
                else:
                    self.log.debug("head from %s v%d: already have it", device, snap.version)
                return False
            self.heads[device] = snap
            self.metas[device] = meta
            self.payloads[device] = data
            self.heard[device] = time.time()
            if lineage or self._new_since_global(device, snap.version):    # a new lineage's head is new whatever
                if not self.fresh:                                         # its version
                    self._first_fresh_t = time.monotonic()
                self.fresh.add(device)
            self.accepted += 1
            if self.store is not None:
                self.store.changed()        # a head not saved yet is still retained on the broker
        self.log.info("head from %s v%d accepted (%d classes, %d samples)", device, snap.version, snap.n_classes,
                      int(snap.counts.sum()))
        return True

    def _retire(self, device: str, new_version: int, new_lineage: str) -> None:  # lock held
        """A rollback: ``device`` restarted without its state. Its held head stays in the fleet as a retired lineage
        (what it learned before is not lost), its new head becomes the current one (what it learns now is shared)."""
        old = self.heads.pop(device)
        meta, data = self._meta_of(device), self.payloads.pop(device)
        self.metas.pop(device, None)
        self.retired.setdefault(device, []).append((meta, old, data))
        self.fresh.discard(device)
        why = (f"of lineage {new_lineage[:8]}, not the v{old.version} held's ({meta.lineage[:8] or 'none'})"
               if new_lineage else f"sent after the v{old.version} held (sent "
               f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(meta.sent_at))})")
        self.log.info("head from %s v%d %s: a new lineage of %s (its state was wiped?); v%d is kept in every round as "
                      "retired lineage %d of %s (%d samples), v%d is its head now", device, new_version, why, device,
                      old.version, len(self.retired[device]), device, int(old.counts.sum()), new_version)

    def _new_since_global(self, device: str, version: int) -> bool:  # lock held
        """Whether ``device``'s head ``version`` is new to the last global head (not its provenance's): a head the
        broker hands out again (retained) to an aggregator that holds none of it yet is in the last round already."""
        return self.provenance.get(device) != version

    #: how long the first round of a run waits, after the broker connection, for the broker's retained global head
    RESUME_WAIT_S = 2.0

    def _on_broker_global(self, data: bytes) -> None:
        """The broker's retained global head: the fleet's last round. Heard before this run's first round, a later
        round than the state's (none: the state lost, deleted, or moved aside as corrupt; an older copy) is where the
        rounds go on: started fresh, the aggregator numbered them from 1 again, and every robot, which had merged the
        last round, skipped each new one as merged already, without a word, until the numbers passed it. The head
        and its provenance become the last round's, when of the fleet's configuration, so the devices' retained heads
        it contains are not new."""
        with self._lock:
            if self._round_known:
                return                    # this aggregator's own global heads, and re-deliveries
            self._round_known = True
            try:
                meta, snap = decode(data, max_bytes=max(self.p.max_bytes, len(data)), fleet=self.p.fleet)
            except TinyclError as exc:
                self.log.warning("the broker's global head cannot be read (%s): rounds go on from round %d", exc,
                                 self.round + 1)
                return
            if meta.round <= self.round:
                return
            before, self.round = self.round, meta.round
            same = (snap.extractor_hash == self.extractor_hash and snap.kind == self.p.kind
                    and (snap.n_classes == 0 or snap.n_features == self.n_features))
            if same:
                self.global_payload, self.global_head, self.provenance = data, snap, dict(meta.provenance)
                self.fresh = {d for d in self.fresh if self._new_since_global(d, self.heads[d].version)}
                self._first_fresh_t = self._first_fresh_t if self.fresh else None
            if self.store is not None:
                self.store.changed()
        self.log.warning("the broker holds the fleet's round %d, %s: rounds go on from round %d%s", meta.round,
                         f"this aggregator's state round {before}" if before else "this aggregator has no state "
                         "(lost, deleted or moved aside?)", meta.round + 1,
                         "" if same else f" (its head is of another configuration: {snap.kind} on extractor "
                         f"{snap.extractor_hash[:12]}; not merged)")

    @property
    def round_known(self) -> bool:
        """Whether this run knows the round to go on from (the broker's retained global head heard, or waited for)."""
        return self._round_known

    def _waits_for_broker(self, now: float) -> bool:  # lock held
        """Whether the first round of this run still waits for the broker's retained global head."""
        if self._round_known:
            return False
        if not self.link.connected.is_set():
            return True
        if self._connected_t is None:
            self._connected_t = now
        if now - self._connected_t < self.RESUME_WAIT_S:
            return True
        self._round_known = True          # the broker holds none: a new fleet, or a broker that lost it
        return False

    # --- rounds ---------------------------------------------------------------------------------
    def tick(self) -> bool:
        """Close a round if due; return whether one was published."""
        p = self.p
        self.link.recheck_ending()
        with self._lock:
            if self.store is not None:
                self.store.tick()
            now = time.monotonic()
            if self._waits_for_broker(now):
                return False
            late = (p.round_timeout_s > 0 and self._first_fresh_t is not None and bool(self.fresh)
                    and now - self._first_fresh_t >= p.round_timeout_s)
            due = ((len(self.fresh) >= p.min_new_heads or late or bool(self.removed)) and len(self.heads) >= p.min_devices
                   and now - self._last_round_t >= p.min_interval_s)
            if not due and self.fresh and not self._wait_said and self._first_fresh_t is not None and \
                    now - self._first_fresh_t >= p.wait_say_s:
                self._wait_said = True
                self._say_wait(now - self._first_fresh_t)
        return self.aggregate_now() if due else False

    def _say_wait(self, waited_s: float) -> None:  # lock held
        """A round waiting for heads that may never come (a robot gone for good) waited without a word, its new
        heads shared with no one; one line naming whom it waits for and the two ways out."""
        p, silent = self.p, sorted(set(self.heads) - self.fresh)
        at = lambda d: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self._meta_of(d).sent_at))  # noqa: E731
        last = ", ".join(f"{d} (last head sent {at(d)})" for d in silent) or "none"
        self.log.warning("round %d has waited %.0f s: %d new head(s) (%s) of the %d needed (min_new_heads), "
                         "%d device(s) of the %d needed (min_devices); the others: %s. A robot gone for good: restart "
                         "the aggregator with --allow without it; a slow one: --round-timeout", self.round + 1,
                         waited_s, len(self.fresh), ", ".join(sorted(self.fresh)), p.min_new_heads, len(self.heads),
                         p.min_devices, last)

    def aggregate_now(self) -> bool:
        """Close a round: merge every known device's latest head (opted-out classes left out), publish
        the global head with its provenance and the per-round table."""
        with self._lock:
            devices = sorted(self.heads)
            if not devices:
                return False
            snaps = [self.heads[d].without(self._meta_of(d).opt_out) for d in devices]
            snaps += [h.without(m.opt_out) for d in sorted(self.retired) for m, h, _ in self.retired[d]]
            rnd = self._devices_round(devices) + 1
            try:
                res = aggregate(snaps, self.p.method, self.p.trim, version=rnd, min_count=self.p.min_count)
            except TinyclError as exc:
                self.log.error("round %d not aggregated: %s", rnd, exc)
                self.fresh.clear()
                return False
            # the global head's provenance: each device's current head version, what a bridge compares its reports
            # with (keys that are not device names would be refused by every robot of an older release); the retired
            # lineages merged too are in the round's record, beside it
            provenance = {d: int(self.heads[d].version) for d in devices}
            payload = encode(res.head, self.p.fleet, self.p.identity, rnd, provenance=provenance)
            record = self._round_record(rnd, devices, res.head, provenance)
            self.rounds = (self.rounds + [record])[-self.p.rounds_kept:]
            self.round = rnd
            self.global_head, self.global_payload, self.provenance = res.head, payload, provenance
            self.fresh.clear()
            self.removed = []
            self._first_fresh_t = None
            self._wait_said = False
            self._last_round_t = time.monotonic()
            self._save()
            table = json.dumps({"fleet": self.p.fleet, "extractor_hash": self.extractor_hash,
                                "rounds": self.rounds}).encode()
        for c in res.conflicts:
            self.log.warning("round %d: %s", rnd, c)
        self.link.offer(global_topic(self.p.fleet), payload, retain=True)
        self.link.offer(rounds_topic(self.p.fleet), table, retain=True)
        acc = record["accuracy"]
        self.log.info("round %d | %d device(s) | stragglers: %s | %d classes | %d samples | accuracy as reported: %s",
                      rnd, len(devices), ",".join(record["stragglers"]) or "-", record["classes"], record["samples"],
                      "-" if acc is None else f"{acc:.2f}%")
        if self.on_global is not None:
            self.on_global(res.head)
        return True

    def _devices_round(self, devices: list[str]) -> int:  # lock held
        """The round to number the next one after: this aggregator's last, unless most of ``devices`` say (each head
        carries the last round its robot took in) they merged a later one. Then the aggregator lost its state and the
        broker its retained global head both: numbered from 1 again, every new round was skipped as merged already.
        One more is added: a robot may have merged a round since its last head (a blended head is acknowledged with
        the next one sent); a gap in the numbers costs nothing. A minority cannot push it up (a device saying it merged
        round 2^32 - 1 would end the rounds)."""
        merged = sorted((self._meta_of(d).round for d in devices), reverse=True)
        most = merged[len(merged) // 2]
        if most <= self.round:
            return self.round
        self.log.warning("round numbering goes on from round %d: most devices (%d of %d) merged round %d or later, "
                         "this aggregator's last round is %d (its state and the broker's global head lost?)", most + 2,
                         sum(r >= most for r in merged), len(merged), most, self.round)
        return most + 1

    def _meta_of(self, device: str) -> PayloadMeta:
        meta = self.metas.get(device)
        if meta is None:                     # loaded from an old state: read it from the payload
            meta = self.metas[device] = decode(self.payloads[device], max_bytes=1 << 30)[0]
        return meta

    def _round_record(self, rnd: int, devices: list[str], head: HeadSnapshot,
                      provenance: dict[str, int]) -> dict[str, Any]:
        """One row of the per-round table: devices, stragglers, every lineage merged (``provenance``: each device's
        current head version, ``retired``: its earlier lineages' last versions), classes, accuracy as devices
        report it."""
        per_device = {d: self._meta_of(d).metrics for d in devices}
        accs = [(m["accuracy"], m.get("samples", 1.0)) for m in per_device.values() if "accuracy" in m]
        weight = sum(w for _, w in accs)
        return {"round": rnd, "time": round(time.time(), 3), "devices": devices, "provenance": dict(provenance),
                "new_heads": sorted(self.fresh), "stragglers": sorted(set(devices) - self.fresh),
                **({"removed": list(self.removed)} if self.removed else {}),
                **({"retired": {d: [h.version for _, h, _ in ls] for d, ls in sorted(self.retired.items())}}
                   if self.retired else {}),
                "classes": head.n_classes, "samples": int(head.counts.sum()),
                "accuracy": round(sum(a * w for a, w in accs) / weight, 3) if accs and weight > 0 else None,
                "device_metrics": per_device,
                "opt_out": {d: self._meta_of(d).opt_out for d in devices if self._meta_of(d).opt_out}}

    def run(self, stop: threading.Event | None = None, duration_s: float | None = None) -> None:
        stop = stop or threading.Event()
        end = None if duration_s is None else time.monotonic() + duration_s
        while not stop.is_set() and (end is None or time.monotonic() < end):
            self.tick()
            stop.wait(self.p.tick_s)

    def close(self) -> None:
        self.link.stop()
        with self._lock:
            if self.store is not None and self.store.dirty:
                self.store.save()

    # --- state (storage.StateStore: the one state store of every learning node) ----------------------
    def _states(self) -> dict[str, dict[str, Any]]:
        """The aggregator's state: every device's latest payload, the global payload, round, table."""
        arrays = {f"device/{d}": np.frombuffer(b, np.uint8) for d, b in self.payloads.items()}
        arrays.update({f"retired/{d}/{i}": np.frombuffer(b, np.uint8) for d, ls in self.retired.items()
                       for i, (_, _, b) in enumerate(ls)})
        arrays["global"] = np.frombuffer(self.global_payload, np.uint8)
        meta = {"fleet": self.p.fleet, "round": self.round, "extractor_hash": self.extractor_hash,
                "n_features": self.n_features, "head_kind": self.p.kind, "rounds": self.rounds,
                "heard_at": {d: t for d, t in self.heard.items() if d in self.heads}}
        return {STATE_KIND: st.make_state(STATE_KIND, STATE_VERSION, {}, arrays, meta)}

    def _save(self) -> None:  # lock held
        if self.store is not None:
            self.store.save()

    def _restore(self, saved: dict[str, dict[str, Any]]) -> None:
        """Apply a saved state; any problem raises (the store moves the file aside, we start fresh; one of another
        configuration stops the aggregator, the file in place)."""
        state = saved_state(saved)
        meta = state["meta"]
        conf = (meta.get("extractor_hash"), meta.get("n_features"), meta.get("head_kind"))
        arrays = state["arrays"]
        if meta.get("round") == 0 and not len(arrays["global"]) and \
                not any(k.startswith(("device/", "retired/")) for k in arrays) and \
                (meta.get("fleet"), *conf) != (self.p.fleet, self.extractor_hash, self.n_features, self.p.kind):
            # saved at the start of a run that got no head (e.g. started with the wrong --kind): nothing to keep
            self.log.info("the saved state holds no round and no head (of fleet %s, %s heads on extractor %s): "
                          "replaced by this configuration's", meta.get("fleet"), conf[2], str(conf[0])[:12])
            return
        # a sound state of another configuration stops the aggregator (moved aside, the fleet's rounds began again at
        # 1 and every robot skipped them as merged already, until they passed the round it had reached)
        if meta.get("fleet") != self.p.fleet:
            raise OtherConfigError(f"it is the state of fleet {meta.get('fleet')!r}, this is {self.p.fleet!r}: start "
                                   f"it with --fleet {meta.get('fleet')}, or start fleet {self.p.fleet!r} in another "
                                   f"--state-dir")
        if conf != (self.extractor_hash, self.n_features, self.p.kind):
            raise OtherConfigError(f"it holds round {meta.get('round')} of a fleet of {conf[2]} heads on extractor "
                                   f"{str(conf[0])[:12]} ({conf[1]} features), this aggregator is configured for "
                                   f"{self.p.kind} on {self.extractor_hash[:12]} ({self.n_features}): start it with "
                                   f"the fleet's --kind and --model (or --extractor-hash and --n-features), or start a "
                                   f"new fleet in another --state-dir")
        heads, payloads, metas = {}, {}, {}
        retired: dict[str, dict[int, tuple[PayloadMeta, HeadSnapshot, bytes]]] = {}
        for key, arr in state["arrays"].items():
            if key.startswith(("device/", "retired/")):
                data = np.asarray(arr, np.uint8).tobytes()
                m, h = decode(data, max_bytes=max(self.p.max_bytes, len(data)), extractor_hash=self.extractor_hash,
                              fleet=self.p.fleet)
                if key.startswith("device/"):
                    metas[key[7:]], heads[key[7:]], payloads[key[7:]] = m, h, data
                else:
                    d, _, i = key[8:].partition("/")
                    retired.setdefault(d, {})[int(i)] = (m, h, data)
        glob = np.asarray(state["arrays"]["global"], np.uint8).tobytes()
        gmeta, ghead = decode(glob, max_bytes=max(self.p.max_bytes, len(glob))) if glob else (None, None)
        rnd, rounds = meta.get("round"), meta.get("rounds", [])
        if isinstance(rnd, bool) or not isinstance(rnd, int) or rnd < 0 or not isinstance(rounds, list):
            raise TinyclError("round / rounds table malformed")
        self.round, self.rounds = rnd, rounds[-self.p.rounds_kept:]
        self.heads, self.payloads, self.global_payload, self.global_head = heads, payloads, glob, ghead
        self.provenance = dict(gmeta.provenance) if gmeta is not None else {}
        self.metas = metas
        heard = meta.get("heard_at") or {}           # none in a state saved before it was kept
        self.heard = {d: float(t) for d, t in heard.items() if d in heads and isinstance(t, (int, float))} \
            if isinstance(heard, dict) else {}
        self.retired = {d: [ls[i] for i in sorted(ls)] for d, ls in retired.items()}
        # new since the last round: a held head the last global head does not contain (its provenance). Saved
        # before a restart, such a head comes back from the broker as one already held: it must still count,
        # else a round waiting for min_new_heads waits for heads that arrived before the restart
        # (a new lineage's head has a lower version than the provenance's: any other version is new)
        self.fresh = {d for d, h in heads.items() if self._new_since_global(d, h.version)}
        self._first_fresh_t = time.monotonic() if self.fresh else None


# --- what the operator sees: tinycl fleet status ----------------------------------------------------------
def status(state_dir: str) -> dict[str, Any]:
    """The fleet as the aggregator last saved it (read only, also while it runs): round, the global head's
    provenance, every device's held head and the latest rounds. TinyclError (one line) if there is none."""
    from ..storage import load_states, state_path
    path = state_path(state_dir, STATE_KIND)
    try:
        saved = load_states(path)
    except TinyclError as exc:          # "state: empty file" named no file
        raise TinyclError(f"{path}: {exc}") from None
    if saved is None:
        raise TinyclError(f"no aggregator state in {state_dir} ({path}): is it the aggregator's --state-dir "
                          f"(default: its --broker-dir), and has the aggregator run there?")
    try:
        state = saved_state(saved)
    except OtherConfigError as exc:
        raise TinyclError(f"{path}: {exc}") from None
    meta, arrays = state["meta"], state["arrays"]
    glob = np.asarray(arrays["global"], np.uint8).tobytes()
    provenance = decode(glob, max_bytes=1 << 30)[0].provenance if glob else {}
    devices, retired = {}, {}
    heard = meta.get("heard_at") if isinstance(meta.get("heard_at"), dict) else {}
    for key, arr in sorted(arrays.items()):
        if key.startswith(("device/", "retired/")):
            m = decode(np.asarray(arr, np.uint8).tobytes(), max_bytes=1 << 30)[0]
            row = {"version": m.version, "sent_at": m.sent_at, "classes": len(m.classes),
                   "samples": int(sum(c.count for c in m.classes)), "lineage_id": m.lineage}
            if key.startswith("device/"):
                devices[key[7:]] = {**row, "in_global": provenance.get(key[7:]), "merged_round": m.round,
                                    "heard_at": heard.get(key[7:])}
            else:                            # retired/<device>/<lineage>: kept in every round since it was retired
                d, _, i = key[8:].partition("/")
                retired.setdefault(d, []).append((int(i), {**row, "lineage": int(i) + 1}))
    return {"fleet": meta.get("fleet"), "round": meta.get("round"), "kind": meta.get("head_kind"),
            "extractor_hash": meta.get("extractor_hash"), "state": str(path), "devices": devices,
            "retired": {d: [r for _, r in sorted(ls, key=lambda x: x[0])] for d, ls in sorted(retired.items())},
            "rounds": meta.get("rounds", [])}


def format_status(s: dict[str, Any], last: int = 5, now: float | None = None) -> str:
    """``status`` for a terminal: one line for the fleet, one per device (its head's age), the last rounds, the round
    under way."""
    t = (lambda x: time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(x)) if x else "-")
    retired = s.get("retired", {})
    n_retired = sum(len(ls) for ls in retired.values())
    lines = [f"fleet {s['fleet']} | round {s['round']} | {s['kind']} | extractor {str(s['extractor_hash'])[:12]} "
             f"| {len(s['devices'])} device(s)" + (f", {n_retired} retired lineage(s)" if n_retired else "")
             + f" | {s['state']}",
             f"{'device':<20} {'head':>6} {'in global':>9} {'merged':>6} {'classes':>7} {'samples':>9}  heard"]
    now = time.time() if now is None else now
    for d, v in sorted(s["devices"].items()):
        ing = "-" if v["in_global"] is None else f"v{v['in_global']}"
        heard = _heard(v)
        off = "" if v.get("heard_at") is None or abs(v["sent_at"] - heard) < CLOCK_OFF_S else \
            f"; its clock said {t(v['sent_at'])}"
        lines.append(f"{d:<20} {'v' + str(v['version']):>6} {ing:>9} {v['merged_round']:>6} {v['classes']:>7} "
                     f"{v['samples']:>9}  {t(heard)} ({_ago(now - heard)}{off})")
    for d, ls in sorted(retired.items()):        # a wiped device's earlier learning, in every round
        for v in ls:
            lines.append(f"{d:<20} {'v' + str(v['version']):>6} {'retired':>9} {'-':>6} {v['classes']:>7} "
                         f"{v['samples']:>9}  {t(v['sent_at'])}: lineage {v['lineage']}, its state wiped since, "
                         f"kept in every round")
    if not s["devices"] and not retired and not s["rounds"]:     # saved at its start: no head came yet
        lines.append(f"no device has reported yet: round {(s['round'] or 0) + 1} waits for the first head")
    for r in s["rounds"][-last:] if last > 0 else []:      # [-0:] is every round
        acc = r.get("accuracy")
        lines.append(f"round {r['round']} at {t(r.get('time'))}: {len(r['devices'])} device(s), new heads "
                     f"{','.join(r['new_heads']) or '-'}, stragglers {','.join(r['stragglers']) or '-'}"
                     + (f", removed {','.join(r['removed'])}" if r.get("removed") else "")
                     + (", retired lineages " + ",".join(f"{d} v{v}" for d, vs in r["retired"].items() for v in vs)
                        if r.get("retired") else "")
                     + f", {r['samples']} samples" + ("" if acc is None else f", accuracy as reported {acc:.2f}%"))
    # what a round under way holds and whom it has heard nothing new from: a robot gone quiet shows here
    new = sorted(d for d, v in s["devices"].items() if v["in_global"] is None or v["version"] != v["in_global"])
    if new:
        quiet = [f"{d} (last heard {_ago(now - _heard(v))})" for d, v in sorted(s["devices"].items())
                 if d not in new]
        lines.append(f"round {(s['round'] or 0) + 1} under way: new heads from {', '.join(new)}; nothing new from "
                     f"{', '.join(quiet) or '-'}")
    return "\n".join(lines)


#: a device's own send time this far from when it was heard is said beside it (its clock is off, or the head waited
#: for this aggregator at the broker)
CLOCK_OFF_S = 300.0


def _heard(device: dict[str, Any]) -> float:
    """When this aggregator took the device's head; its own send time in a state saved before that was kept."""
    return device["heard_at"] if device.get("heard_at") is not None else device["sent_at"]


def _ago(seconds: float) -> str:
    """'12 s ago', '3 min ago', '5 h ago', '2 days ago': how stale a head is, at a glance."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= 2 * size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{max(seconds, 0):.0f} s ago"


def status_main(argv: list[str] | None = None) -> int:
    """``tinycl fleet status DIR``: the fleet's state as the aggregator saved it."""
    ap = argparse.ArgumentParser(prog="tinycl fleet status", description="which devices reported, which round, "
                                 "which head versions are in the global head (from the aggregator's saved state)")
    ap.add_argument("state_dir", help="the aggregator's --state-dir (default of tinycl aggregate: its --broker-dir)")
    ap.add_argument("--json", action="store_true", help="everything, as JSON (the whole round table)")
    ap.add_argument("--rounds", type=count(0), default=5, help="how many of the last rounds to show (0: none)")
    a = ap.parse_args(argv)
    try:
        s = status(a.state_dir)
    except TinyclError as exc:
        print(f"tinycl fleet status: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(s, indent=1) if a.json else format_status(s, a.rounds))
    return 0


# --- as a node on the bus ------------------------------------------------------------------------------
class AggregatorNode(Node):
    Params = AggregatorParams

    def __init__(self, bus: Any, params: AggregatorParams) -> None:
        super().__init__(bus, params)
        from ..interfaces.heads import to_msg
        Head, ClassInfo = bus.msg("Head"), bus.msg("ClassInfo")
        pub = bus.create_publisher(params.bus_topic, Head, "latched")
        self._pending: list[HeadSnapshot] = []
        self.agg = Aggregator(params, self.log, on_global=self._pending.append)
        self.stores += [self.agg.store] if self.agg.store is not None else []   # its health on /diagnostics

        def tick() -> None:
            self.agg.tick()
            while self._pending:
                pub.publish(to_msg(self._pending.pop(0), Head, ClassInfo, bus.stamp()))
        bus.create_timer(params.tick_s, tick)

    def status(self) -> Status:
        """The fleet link on /diagnostics (``link_status``), the round and the device heads it holds."""
        st = link_status(self.agg.link)
        st.values.update({"round": str(self.agg.round), "device_heads": str(len(self.agg.heads)),
                          "heads_refused": str(self.agg.refused)})
        return st

    def close(self) -> None:
        self.agg.close()


def node_main(argv: list[str] | None = None) -> int:
    return run_node(AggregatorNode, "aggregator", argv)


# --- CLI: tinycl aggregate ----------------------------------------------------------------------------
def build_parser(prog: str = "tinycl aggregate") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description="federated aggregator of the fleet's heads over MQTT")
    ap.add_argument("--fleet", required=True)
    ap.add_argument("--broker-dir", default="", help="directory of `tinycl fleet setup` or its bundles/aggregator (TLS files, password)")
    ap.add_argument("--method", default="fedavg", choices=["fedavg", "median", "trimmed_mean"])
    ap.add_argument("--trim", type=float, default=0.2)
    ap.add_argument("--min-devices", type=int, default=1)
    ap.add_argument("--min-new-heads", type=int, default=1)
    ap.add_argument("--min-interval", type=float, default=1.0, dest="min_interval_s")
    ap.add_argument("--round-timeout", type=float, default=0.0, dest="round_timeout_s",
                    help="close a round this many seconds after its first new head even if fewer than "
                         "--min-new-heads came (the silent devices' previous heads are used; 0: wait for them)")
    ap.add_argument("--max-norm", type=float, default=DEFAULT_MAX_NORM)
    ap.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    ap.add_argument("--model", default="", help="the fleet's extractor model (its hash and feature count)")
    ap.add_argument("--extractor-hash", default="")
    ap.add_argument("--n-features", type=int, default=0)
    ap.add_argument("--kind", default=None, help="head kind of the fleet: StreamingLDA (the default preset tinycl) "
                                                 "| CWRStar (presets tinyndc, supervised)")
    ap.add_argument("--allow", default=None, help="comma-separated allowed device ids (default: any the broker lets "
                    "publish); a device left out is dropped from the held heads too, with its retired lineages (a "
                    "revoked one's last head otherwise stays in every round)")
    ap.add_argument("--state-dir", default="", help="folder of aggregator.state (default: <broker-dir>)")
    ap.add_argument("--host", default="", help="broker host name (default: the broker_dir's, else 127.0.0.1)")
    ap.add_argument("--port", type=int, default=None)
    ap.add_argument("--duration", type=number(0), default=None, help="stop after this many seconds (default: run)")
    ap.add_argument("--log-level", default="info")
    return ap


def main(argv: list[str] | None = None) -> int:
    """``tinycl aggregate``: run the aggregator until Ctrl-C, SIGTERM or SIGHUP (or ``--duration``); it saves then."""
    import signal

    from ..nodes.runner import STOP_SIGNALS
    a = build_parser().parse_args(argv)
    values = {"fleet": a.fleet, "broker_dir": a.broker_dir, "method": a.method, "trim": a.trim,
              "min_devices": a.min_devices, "min_new_heads": a.min_new_heads, "min_interval_s": a.min_interval_s,
              "round_timeout_s": a.round_timeout_s,
              "max_norm": a.max_norm, "max_bytes": a.max_bytes, "extractor_hash": a.extractor_hash,
              "model": a.model, "n_features": a.n_features, **({"kind": a.kind} if a.kind else {}),
              "allowed_devices": [x for x in a.allow.split(",") if x] if a.allow is not None else None,
              "state_dir": a.state_dir or a.broker_dir,
              "mqtt_host": a.host, "mqtt_port": a.port}
    logging.basicConfig(level=getattr(logging, a.log_level.upper(), logging.INFO),
                        format="[%(name)s] %(levelname)s: %(message)s", stream=sys.stderr)
    try:
        params = validate(AggregatorParams, values, "aggregate")
        agg = Aggregator(params, state_option="--state-dir")
    except TinyclError as exc:
        print(f"error: {exc}".replace("\n", "\nerror: "), file=sys.stderr)
        return 2
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in STOP_SIGNALS}   # SIGHUP killed it, unsaved
    try:
        agg.run(stop, a.duration)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        agg.close()
    return 0


if __name__ == "__main__":
    sys.exit(node_main() if "--ros-args" in sys.argv else main())
