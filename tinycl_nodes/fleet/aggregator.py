"""The fleet aggregator: device heads in, a versioned global head out (``tinycl aggregate``).

It subscribes ``tinycl/<fleet>/+/head`` (QoS 1, persistent session) and keeps the latest valid
head of every device. A head is refused — one warning line naming the device and the reason, the
aggregator keeps running — if its payload is malformed, oversized, of another schema version,
of another fleet, built on another extractor, carries NaN/inf or an absurd norm, comes from a
device not allowed, claims another device than its topic, or differs in kind / feature count
from the fleet's. An older or equal version of a device's head than the one held is ignored.

A round closes when ``min_new_heads`` new heads arrived since the last round, at least
``min_devices`` devices are known and ``min_interval_s`` passed since the last round: the latest
heads of all known devices are aggregated (``fedavg`` by per-class counts | ``median`` |
``trimmed_mean``, see ``core/federated.py``) and published retained on ``tinycl/<fleet>/global``
with ``round`` = the round number (also the global head's version).

State (round, extractor hash, every device's latest payload, the last global payload) is saved
after every round and at most every ``save_interval_s`` after accepted heads (a head not saved
yet is not lost: it is retained on the broker and delivered again after a restart) and on close,
to ``state_file`` with an atomic write (temp file + fsync + rename) in a
versioned JSON format; on restart it is loaded, and the last global head is offered again.

Run: ``tinycl aggregate --broker-dir DIR --fleet F [--method median] [--state-file PATH]``, or
as a node on the bus (``python -m tinycl_nodes.fleet.aggregator --ros-args -p fleet:=F ...``),
which also publishes the global head on the bus topic ``global_head`` (latched).
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from ..core.errors import TinyclError
from ..core.federated import DEFAULT_MAX_NORM, HeadSnapshot, RefusedHead, aggregate, check_snapshot
from ..nodes.runner import Node, run_node, validate
from .broker import AGGREGATOR, global_topic, head_topic
from .link import MqttLink, MqttNodeParams, mqtt_params
from .payload import DEFAULT_MAX_BYTES, FleetName, decode, encode

STATE_FORMAT = "tinycl.aggregator"
STATE_VERSION = 1



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
    max_norm: float = Field(DEFAULT_MAX_NORM, gt=0, description="a head whose weight norm exceeds this is refused "
                                                                "(absurd norm)")
    max_bytes: int = Field(DEFAULT_MAX_BYTES, ge=1024, le=64 << 20,
                           description="largest head payload accepted (bytes)")
    extractor_hash: str = Field("", description="empty: fixed by the first accepted head (and saved)")
    allowed_devices: list[FleetName] | None = Field(None, description="devices whose heads are accepted (None: any "
                                                                      "the broker admits)")
    state_file: str = Field("", description="round, device heads and global head are saved here (atomic JSON); "
                                            "empty: no persistence")
    save_interval_s: float = Field(1.0, ge=0, le=3600, description="accepted heads are saved at most this often "
                                                                   "(seconds)")
    tick_s: float = Field(0.1, gt=0, le=10, description="seconds between checks whether a round is due")
    bus_topic: str = Field("global_head", description="as a node: bus topic the global head is published on "
                                                      "(latched)")




class Aggregator:
    """MQTT side and rounds; thread-safe (messages come from paho's thread, ``tick`` from the caller)."""

    def __init__(self, params: AggregatorParams, logger: logging.Logger | None = None,
                 on_global: Any = None, start: bool = True) -> None:
        self.p = params
        self.log = logger or logging.getLogger("tinycl.aggregator")
        self.on_global = on_global
        self._lock = threading.Lock()
        self.round = 0
        self.extractor_hash = params.extractor_hash
        self.heads: dict[str, HeadSnapshot] = {}
        self.payloads: dict[str, bytes] = {}
        self.global_payload: bytes = b""
        self.global_head: HeadSnapshot | None = None
        self.fresh: set[str] = set()
        self.refused = 0
        self.accepted = 0
        self.last_refusal = ""
        self._last_round_t = -1e18
        self._dirty = False
        self._saved_t = -1e18
        self._load()
        self.prefix = f"tinycl/{params.fleet}/"
        self.link = MqttLink(mqtt_params(params, params.identity), f"tinycl-{params.fleet}-{params.identity}",
                             [head_topic(params.fleet, "+")], self.on_message, self.log)
        if self.global_payload:
            self.link.offer(global_topic(params.fleet), self.global_payload, retain=True)
        if start:
            self.link.start()

    # --- receiving ------------------------------------------------------------------------------
    def on_message(self, topic: str, data: bytes) -> None:
        parts = topic.split("/")
        if len(parts) != 4 or parts[0] != "tinycl" or parts[1] != self.p.fleet or parts[3] != "head":
            return
        device = parts[2]
        try:
            self.accept(device, data)
        except TinyclError as exc:
            self.refused += 1
            self.last_refusal = f"head from {device} refused: {exc}"
            self.log.warning("%s", self.last_refusal)

    def accept(self, device: str, data: bytes) -> bool:
        """Validate and store one device head; raise TinyclError with the reason if refused."""
        p = self.p
        if p.allowed_devices is not None and device not in p.allowed_devices:
            raise RefusedHead(f"device {device!r} is not allowed in this fleet")
        meta, snap = decode(data, max_bytes=p.max_bytes, fleet=p.fleet, extractor_hash=self.extractor_hash or None)
        if meta.device != device:
            raise RefusedHead(f"payload claims device {meta.device!r} on {device}'s topic")
        with self._lock:
            ref = next(iter(self.heads.values()), None)
            check_snapshot(snap, extractor_hash=self.extractor_hash or None, max_norm=p.max_norm,
                           allowed_devices=p.allowed_devices,
                           n_features=ref.n_features if ref is not None and ref.n_classes else None,
                           kind=ref.kind if ref is not None else None)
            old = self.heads.get(device)
            if old is not None and snap.version <= old.version:
                self.log.debug("head from %s v%d: already have v%d", device, snap.version, old.version)
                return False
            if not self.extractor_hash:
                self.extractor_hash = snap.extractor_hash
                self.log.info("fleet extractor fixed by the first head: %s", snap.extractor_hash[:12])
            self.heads[device] = snap
            self.payloads[device] = data
            self.fresh.add(device)
            self.accepted += 1
            self._dirty = True
        self.log.info("head from %s v%d accepted (%d classes, %d samples)", device, snap.version, snap.n_classes,
                      int(snap.counts.sum()))
        return True

    # --- rounds ---------------------------------------------------------------------------------
    def tick(self) -> bool:
        """Close a round if due; return whether one was published."""
        p = self.p
        with self._lock:
            if self._dirty and time.monotonic() - self._saved_t >= p.save_interval_s:
                self._save()
            due = (len(self.fresh) >= p.min_new_heads and len(self.heads) >= p.min_devices
                   and time.monotonic() - self._last_round_t >= p.min_interval_s)
        return self.aggregate_now() if due else False

    def aggregate_now(self) -> bool:
        with self._lock:
            snaps = [self.heads[d] for d in sorted(self.heads)]
            if not snaps:
                return False
            rnd = self.round + 1
            try:
                res = aggregate(snaps, self.p.method, self.p.trim, version=rnd, min_count=self.p.min_count)
            except TinyclError as exc:
                self.log.error("round %d not aggregated: %s", rnd, exc)
                self.fresh.clear()
                return False
            payload = encode(res.head, self.p.fleet, self.p.identity, rnd)
            self.round = rnd
            self.global_head = res.head
            self.global_payload = payload
            self.fresh.clear()
            self._last_round_t = time.monotonic()
            self._save()
        for c in res.conflicts:
            self.log.warning("round %d: %s", rnd, c)
        self.link.offer(global_topic(self.p.fleet), payload, retain=True)
        self.log.info("round %d: %s of %d device(s), %d classes, published", rnd, self.p.method, len(snaps),
                      res.head.n_classes)
        if self.on_global is not None:
            self.on_global(res.head)
        return True

    def run(self, stop: threading.Event | None = None, duration_s: float | None = None) -> None:
        stop = stop or threading.Event()
        end = None if duration_s is None else time.monotonic() + duration_s
        while not stop.is_set() and (end is None or time.monotonic() < end):
            self.tick()
            stop.wait(self.p.tick_s)

    def close(self) -> None:
        self.link.stop()
        with self._lock:
            if self._dirty:
                self._save()

    # --- state ----------------------------------------------------------------------------------
    def _save(self) -> None:  # lock held
        self._dirty = False
        self._saved_t = time.monotonic()
        if not self.p.state_file:
            return
        doc = {"format": STATE_FORMAT, "version": STATE_VERSION, "fleet": self.p.fleet, "round": self.round,
               "extractor_hash": self.extractor_hash,
               "devices": {d: base64.b64encode(b).decode() for d, b in self.payloads.items()},
               "global": base64.b64encode(self.global_payload).decode()}
        atomic_write(Path(self.p.state_file), json.dumps(doc).encode())

    def _load(self) -> None:
        path = Path(self.p.state_file) if self.p.state_file else None
        if path is None or not path.exists():
            return
        try:
            doc = json.loads(path.read_bytes())
            if doc.get("format") != STATE_FORMAT:
                raise ValueError("not an aggregator state file")
            if doc.get("version") != STATE_VERSION:
                raise ValueError(f"state version {doc.get('version')!r} is not supported (reads {STATE_VERSION})")
            if doc.get("fleet") != self.p.fleet:
                raise ValueError(f"state is of fleet {doc.get('fleet')!r}")
            heads, payloads = {}, {}
            eh = self.p.extractor_hash or doc.get("extractor_hash", "")
            for d, b64 in doc["devices"].items():
                data = base64.b64decode(b64)
                _, heads[d] = decode(data, max_bytes=max(self.p.max_bytes, len(data)), extractor_hash=eh or None)
                payloads[d] = data
            glob = base64.b64decode(doc.get("global", ""))
            ghead = decode(glob, max_bytes=max(self.p.max_bytes, len(glob)))[1] if glob else None
            rnd = int(doc["round"])
        except (OSError, ValueError, KeyError, TypeError, TinyclError) as exc:
            raise TinyclError(f"aggregator: state file {path} unusable: {str(exc).splitlines()[0]} "
                              f"(move it away to start afresh)") from None
        self.round, self.extractor_hash = rnd, eh
        self.heads, self.payloads, self.global_payload, self.global_head = heads, payloads, glob, ghead
        self.log.info("state loaded from %s: round %d, %d device head(s)", path, rnd, len(heads))


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a crash leaves either the old or the new file, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


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

        def tick() -> None:
            self.agg.tick()
            while self._pending:
                pub.publish(to_msg(self._pending.pop(0), Head, ClassInfo, bus.stamp()))
        bus.create_timer(params.tick_s, tick)

    def close(self) -> None:
        self.agg.close()


def node_main(argv: list[str] | None = None) -> int:
    return run_node(AggregatorNode, "aggregator", argv)


# --- CLI: tinycl aggregate ----------------------------------------------------------------------------
def build_parser(prog: str = "tinycl aggregate") -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog=prog, description="federated aggregator of the fleet's heads over MQTT")
    ap.add_argument("--fleet", required=True)
    ap.add_argument("--broker-dir", default="", help="directory made by tools/mosquitto/setup.sh (TLS files, password)")
    ap.add_argument("--method", default="fedavg", choices=["fedavg", "median", "trimmed_mean"])
    ap.add_argument("--trim", type=float, default=0.2)
    ap.add_argument("--min-devices", type=int, default=1)
    ap.add_argument("--min-new-heads", type=int, default=1)
    ap.add_argument("--min-interval", type=float, default=1.0, dest="min_interval_s")
    ap.add_argument("--max-norm", type=float, default=DEFAULT_MAX_NORM)
    ap.add_argument("--max-bytes", type=int, default=DEFAULT_MAX_BYTES)
    ap.add_argument("--extractor-hash", default="")
    ap.add_argument("--allow", default=None, help="comma-separated allowed device ids (default: any the ACL admits)")
    ap.add_argument("--state-file", default="", help="default: <broker-dir>/aggregator-state.json")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=None)
    ap.add_argument("--duration", type=float, default=None, help="stop after this many seconds (default: run)")
    ap.add_argument("--log-level", default="info")
    return ap


def main(argv: list[str] | None = None) -> int:
    """``tinycl aggregate``: run the aggregator until Ctrl-C / SIGTERM (or ``--duration``)."""
    import signal
    a = build_parser().parse_args(argv)
    values = {"fleet": a.fleet, "broker_dir": a.broker_dir, "method": a.method, "trim": a.trim,
              "min_devices": a.min_devices, "min_new_heads": a.min_new_heads, "min_interval_s": a.min_interval_s,
              "max_norm": a.max_norm, "max_bytes": a.max_bytes, "extractor_hash": a.extractor_hash,
              "allowed_devices": [x for x in a.allow.split(",") if x] if a.allow is not None else None,
              "state_file": a.state_file or (str(Path(a.broker_dir) / "aggregator-state.json") if a.broker_dir else ""),
              "mqtt_host": a.host, "mqtt_port": a.port}
    logging.basicConfig(level=getattr(logging, a.log_level.upper(), logging.INFO),
                        format="[%(name)s] %(levelname)s: %(message)s", stream=sys.stderr)
    try:
        params = validate(AggregatorParams, values, "aggregate")
        agg = Aggregator(params)
    except TinyclError as exc:
        print(f"error: {exc}".replace("\n", "\nerror: "), file=sys.stderr)
        return 2
    stop = threading.Event()
    old = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        agg.run(stop, a.duration)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
        agg.close()
    return 0


if __name__ == "__main__":
    sys.exit(node_main() if "--ros-args" in sys.argv else main())
