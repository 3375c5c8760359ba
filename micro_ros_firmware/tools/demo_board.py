#!/usr/bin/env python3
"""`make demo-board`: the micro-ROS firmware on an emulated Cortex-M7 joins the Python graph through a
real Micro XRCE-DDS agent, and the figures go to results/board.json.

    QEMU mps2-an500 (firmware: app + C core + int8 model, MNIST test stream in flash)
      ⇄ UART0 on a host pty ⇄ MicroXRCEAgent serial (Fast DDS) ⇄ Cyclone DDS ⇄ the Python graph:
        this monitor (dds backend): decodes features, predictions, label requests and heads with the
        project's converters, answers label requests with the true class (a person with the label app
        would), publishes a fleet global head; the exporter node writes the board's head as ONNX + C.

Mid-run the agent is stopped for --outage-s and restarted: the board keeps learning and reconnects.
Checked at the end: per topic, messages the board sent (its own counters) and the graph received; the
board's predictions against the host build of the same C core replaying the same stream and the same
label answers / global head at the same frames (identical, prediction for prediction); its accuracy;
the reconnect times (the board's own, from when it noticed the agent was gone, so most of the outage; the graph's, from
the agent's restart to the board's first message). Bad input is sent too (an answer for an unknown request, a global head from another
extractor): the board must log one line for each and drop it.

Run DDS inside a private network namespace on a shared machine:
    unshare -n bash -c 'ip link set lo up && .venv/bin/python micro_ros_firmware/tools/demo_board.py'
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

FW = Path(__file__).resolve().parents[1]
REPO = FW.parent
sys.path.insert(0, str(REPO))

from tinycl_nodes.core.errors import InputError, TinyclError  # noqa: E402
from tinycl_nodes.datasets.paths import DataError  # noqa: E402
from tinycl_nodes.launcher import stop_processes  # noqa: E402

KIT = Path(os.environ.get("TINYCL_MICROROS_KIT", REPO.parent / "shared" / "kits" / "microros"))
DEVICE = "board1"
TOPICS = ("features", "predictions", "label_request", "head")
DECODE_FAILED = "could not be decoded"   # the board's line for a message rmw_microxrcedds cannot decode
NAME_REFUSED = "'s name "                # in the board's line for a message with a class name no node keeps
RECONNECT_TAIL_S = 4.0   # stream left after the agent's restart: the board's reconnect + the graph's discovery (≤ 3 s)


class DemoError(TinyclError):
    pass


def sh(cmd: list[str], **kw: Any) -> subprocess.CompletedProcess:
    p = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if p.returncode != 0:
        raise DemoError(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


# ------------------------------------------------------------------------------------------ build
def build_uros(meta: Path | None = None) -> dict[str, str]:
    """Agent + libmicroros.a from the kit (cached under ~/.cache/tinycl by the hash of their inputs); ``meta``: another
    colcon meta than ``app/tinycl.meta``."""
    t0 = time.monotonic()
    env = {**os.environ, "TINYCL_MICROROS_META": str(meta)} if meta is not None else None
    p = sh(["bash", str(FW / "tools" / "build-uros.sh")], env=env)
    out = dict(ln.split("=", 1) for ln in p.stdout.splitlines() if "=" in ln)
    out["seconds"] = f"{time.monotonic() - t0:.1f}"
    return out


def state_file(work: Path) -> Path:
    """The board's storage of its learned state (mps2-an500: a host file written through semihosting)."""
    return work / "state.bin"


def read_storage(path: Path) -> tuple[bytes, dict[str, Any]]:
    """The board's storage (app/src/main.c): the learner's blob (``c_state``), then the app's record, which carries its
    own layout and ends with its size and CRC-32: (blob, {boot, global_applied, global_version, names, class_names,
    name_cap, pending}), ``class_names`` {class id: name} (``names`` of them), ``name_cap`` the bytes the record keeps
    a name in, ``pending`` the label requests awaiting an answer as (boot, sample id, the data the learner learns
    from)."""
    data = path.read_bytes()
    if len(data) < 8:
        raise DemoError(f"{path}: {len(data)} bytes is no board storage")
    size, crc = struct.unpack_from("<II", data, len(data) - 8)
    record = data[len(data) - size:]
    if not 40 <= size < len(data) or zlib.crc32(record[:-4]) != crc:
        raise DemoError(f"{path}: the app's record at its end is malformed")
    boot, applied, version, names, max_classes, name_cap, ring, slot_data = struct.unpack_from("<8I", record)
    at = 32 + max_classes * (4 + name_cap)
    if at + ring * (8 + slot_data) + 8 != size:
        raise DemoError(f"{path}: the app's record has {size} bytes, not what its layout says")
    class_names = {}
    for k in range(names):
        class_id, = struct.unpack_from("<i", record, 32 + k * (4 + name_cap))
        start = 32 + k * (4 + name_cap) + 4
        class_names[class_id] = record[start:start + name_cap].split(b"\0", 1)[0].decode()
    pending = []
    for k in range(ring):
        slot_boot, sample_id = struct.unpack_from("<2I", record, at + k * (8 + slot_data))
        if sample_id:
            start = at + k * (8 + slot_data) + 8
            pending.append((slot_boot, sample_id, record[start:start + slot_data]))
    return data[:len(data) - size], {"boot": boot, "global_applied": applied, "global_version": version,
                                     "names": names, "class_names": class_names, "name_cap": name_cap,
                                     "pending": sorted(pending)}


def build_firmware(work: Path, libmicroros: str, n_stream: int, seed: int, classes: str, period_ms: int,
                   domain: int, data: str | None, options: tuple[str, ...] = ()) -> tuple[Path, Any]:
    """Generated sources (init samples, stream) + the app for mps2-an500 with -Wall -Wextra -Werror
    (``options``: more -D settings of app/CMakeLists.txt, e.g. ``-DTINYCL_APP_HEAD=latent``); its storage is
    ``state_file(work)``."""
    from tinycl_nodes.export.c_board import board_data, parse_classes, write_sources

    bd = board_data(data, n_stream, seed, 10, parse_classes(classes))
    write_sources(work / "gen", bd)
    build = work / "arm"
    sh(["cmake", "-S", str(FW / "app"), "-B", str(build), f"-DCMAKE_TOOLCHAIN_FILE={FW / 'cmake' / 'arm-none-eabi.cmake'}",
        f"-DLIBMICROROS={libmicroros}", f"-DTINYCL_BOARD_GEN={work / 'gen'}", f"-DTINYCL_DOMAIN_ID={domain}",
        f"-DTINYCL_DEVICE={DEVICE}", f"-DTINYCL_FRAME_PERIOD_MS={period_ms}", f"-DTINYCL_PYTHON={sys.executable}",
        f"-DTINYCL_STATE_FILE={state_file(work)}", "-DCMAKE_BUILD_TYPE=Release", *options])
    sh(["cmake", "--build", str(build), "-j2"])
    return build / "tinycl_board.elf", bd


def model_sha(work: Path) -> str:
    """The extractor hash the board's messages carry: the int8 model generated into ``work`` by build_firmware."""
    return re.search(r'TINYCL_MODEL_SHA256 "([0-9a-f]+)"', (work / "arm" / "gen" / "tinycl_model.h").read_text())[1]


def elf_size(elf: Path) -> dict[str, int]:
    text, data, bss = (int(v) for v in sh(["arm-none-eabi-size", "-B", str(elf)]).stdout.splitlines()[1].split()[:3])
    return {"text": text, "data": data, "bss": bss, "flash": text + data, "ram": data + bss}


# ------------------------------------------------------------------------------------------ processes
class Qemu:
    """The emulated board; UART0 on a pty, semihosting log to a file."""

    def __init__(self, elf: Path, log: Path) -> None:
        self.log_path = log
        self.log = open(log, "wb")
        self.proc = subprocess.Popen(["qemu-system-arm", "-M", "mps2-an500", "-nographic", "-monitor", "none",
                                      "-serial", "pty", "-semihosting-config", "enable=on,target=native",
                                      "-kernel", str(elf)], stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            m = re.search(r"/dev/pts/\d+", self.text())
            if m:
                self.pty = m.group(0)
                return
            time.sleep(0.05)
        self.stop()
        raise DemoError(f"QEMU printed no pty: {self.text()[-500:]}")

    def text(self) -> str:
        return self.log_path.read_text(errors="replace")

    def lines(self) -> list[str]:
        return [ln.strip() for ln in self.text().splitlines()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.log.close()


class Agent:
    """MicroXRCEAgent serial on the board's pty, Fast DDS on 127.0.0.1 only (config/fastdds-agent-loopback.xml)."""

    def __init__(self, binary: str, pty: str, log: Path) -> None:
        self.cmd = [binary, "serial", "--dev", pty, "-b", "115200", "-v4"]
        from tinycl_nodes.bus.dds_config import AGENT_PROFILE_NAME, shipped_config

        self.env = {**os.environ, "FASTRTPS_DEFAULT_PROFILES_FILE": str(shipped_config(AGENT_PROFILE_NAME))}
        self.log = open(log, "ab")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, env=self.env, stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)   # vanishes as a crashed or unplugged agent does
            self.proc.wait()
        self.proc = None


def spin_until_done(qemu: Qemu, bus: Any, timeout_s: float, check: Callable[[], None] = lambda: None) -> float:
    """Spin the graph side until the board logs DONE (``check`` raises to stop earlier); the run's seconds."""
    t0 = time.monotonic()
    while "DONE" not in qemu.lines():
        bus.spin_once(0.05)
        if qemu.proc.poll() is not None and "DONE" not in qemu.lines():
            raise DemoError(f"the board stopped (exit {qemu.proc.returncode}): {qemu.text()[-1500:]}")
        if time.monotonic() - t0 > timeout_s:
            raise DemoError(f"no DONE from the board in {timeout_s:.0f} s: {qemu.text()[-1500:]}")
        check()
    return time.monotonic() - t0


# ------------------------------------------------------------------------------------------ the graph side
@dataclass
class Monitor:
    """The Python side on the dds backend: decodes every message of the board with the project's code."""

    bus: Any
    labels: np.ndarray                       # true class of sample_id − 1
    extractor_hash: str
    knows: tuple[int, ...] | None = None     # the classes the person answering knows (None: every class)
    received: dict[str, int] = field(default_factory=lambda: dict.fromkeys(TOPICS, 0))
    ids: dict[str, set[int]] = field(default_factory=lambda: {t: set() for t in TOPICS[:3]})   # sample ids received
    predictions: dict[int, int] = field(default_factory=dict)
    stamps: dict[int, int] = field(default_factory=dict)   # sample id → the prediction's header stamp (s)
    names: dict[int, str] = field(default_factory=dict)    # class id → the name the board last predicted it with
    heads: list[Any] = field(default_factory=list)
    class_lists: list[dict[int, tuple[str, int]]] = field(default_factory=list)   # `classes`: id → (name, samples)
    answered: list[tuple[str, int]] = field(default_factory=list)
    unanswered: int = 0
    last_rx: float = 0.0
    first_rx_after: dict[float, float] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)   # the board's DiagnosticStatus on /diagnostics

    def __post_init__(self) -> None:
        b = self.bus
        b.create_subscription("features", "Features", self._guard("features", self.on_features), "reliable")
        b.create_subscription("predictions", "Prediction", self._guard("predictions", self.on_prediction), "reliable")
        b.create_subscription("label_request", "LabelRequest", self._guard("label_request", self.on_request), "reliable")
        b.create_subscription("head", "Head", self._guard("head", self.on_head), "latched")
        b.create_subscription("classes", "ClassList", self.on_classes, "latched")
        b.create_subscription("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", self.on_diagnostics, "reliable")
        self.answer_pub = b.create_publisher("label_answer", "LabelAnswer", "reliable")
        self.global_pub = b.create_publisher("global_head", "Head", "latched")

    def _guard(self, topic: str, fn):
        def cb(msg: Any) -> None:
            self.received[topic] += 1
            self.last_rx = time.monotonic()
            try:
                fn(msg)
            except Exception as exc:  # noqa: BLE001 - counted and reported: the board sent something we refuse
                self.errors.append(f"{topic}: {type(exc).__name__}: {exc}")
        return cb

    def on_features(self, msg: Any) -> None:
        from tinycl_nodes.nodes.messages import features_of
        features_of(msg, 64, self.extractor_hash)
        self.ids["features"].add(int(msg.sample_id))

    def on_prediction(self, msg: Any) -> None:
        self.predictions[int(msg.sample_id)] = int(msg.class_id)
        self.stamps[int(msg.sample_id)] = int(msg.header.stamp.sec)
        self.names[int(msg.class_id)] = str(msg.class_name)
        self.ids["predictions"].add(int(msg.sample_id))

    def on_head(self, msg: Any) -> None:
        from tinycl_nodes.interfaces.heads import from_msg
        self.heads.append(from_msg(msg, self.extractor_hash, DEVICE))

    def on_classes(self, msg: Any) -> None:
        """The board's class list (latched, with its head; the latent app's without one). Not a topic of TOPICS, as
        /diagnostics: a list it cannot read is an error."""
        try:
            self.class_lists.append({int(c.id): (str(c.name), int(c.sample_count)) for c in msg.classes})
        except Exception as exc:  # noqa: BLE001 - counted and reported, as _guard does for TOPICS
            self.errors.append(f"classes: {type(exc).__name__}: {exc}")

    def on_diagnostics(self, msg: Any) -> None:
        """The board's health (app/src/main.c publish_diagnostics): level, message, hardware id and values. Not a
        topic of TOPICS (no per-message delivery check, no receive time): a status it cannot read is an error."""
        try:
            for st in msg.status:
                if st.name == f"/{DEVICE}/tinycl/tinycl_board":
                    level = st.level if isinstance(st.level, int) else int.from_bytes(bytes(st.level), "little")
                    self.statuses.append({"level": level, "message": str(st.message),
                                          "hardware_id": str(st.hardware_id),
                                          "values": {str(kv.key): str(kv.value) for kv in st.values}})
        except Exception as exc:  # noqa: BLE001 - counted and reported, as _guard does for TOPICS
            self.errors.append(f"diagnostics: {type(exc).__name__}: {exc}")

    def on_request(self, msg: Any) -> None:
        """A person answers with the true class (a new class for the board included)."""
        from tinycl_nodes.nodes.messages import features_of
        features_of(msg.features, 64, self.extractor_hash)
        sid = int(msg.features.sample_id)
        self.ids["label_request"].add(sid)
        label = int(self.labels[sid - 1])
        if self.knows is not None and label not in self.knows:
            self.unanswered += 1
            return
        self.answer(msg.request_id, label)
        self.answered.append((msg.request_id, label))

    def answer(self, request_id: str, label: int) -> None:
        A = self.bus.msg("LabelAnswer")
        self.answer_pub.publish(A(header=type(A().header)(stamp=self.bus.stamp(), frame_id=""), request_id=request_id,
                                  class_id=label, new_class_name="", answered_by="demo_board"))


def trained_head(data: str | None, seed: int, classes: Any, extractor_hash: str, version: int = 1,
                 device: str = "aggregator", names: dict[int, str] | None = None) -> Any:
    """A CWR* head trained on 20 labelled training images of each of ``classes`` (C-core features); ``names``: class
    id → name (default the id)."""
    from tinycl_nodes.core.cwr import CWRStar
    from tinycl_nodes.core.federated import snapshot_from_head
    from tinycl_nodes.datasets import load_mnist
    from tinycl_nodes.export.c_vectors import reference_features, reference_session
    from tinycl_nodes.presets import CWR_PARAMS

    X, y = load_mnist("train", data)
    rng = np.random.default_rng(seed + 1000)
    idx = rng.permutation(np.concatenate([rng.choice(np.flatnonzero(y == c), 20, replace=False) for c in classes]))
    feats = reference_features(reference_session(), X[idx])
    head = CWRStar(feats.shape[1], extractor_hash=extractor_hash, **CWR_PARAMS)
    for f, c in zip(feats, y[idx]):
        head.learn_one(f, int(c))
    head.flush()
    return snapshot_from_head(head, names, version=version, device=device)


def global_head_msg(bus: Any, data: str | None, seed: int, extractor_hash: str, version: int = 1) -> tuple[Any, Any]:
    """A stand-alone global head (no fleet round): CWR* trained on every digit."""
    from tinycl_nodes.interfaces.heads import to_msg

    snap = trained_head(data, seed, range(10), extractor_hash, version)
    return to_msg(snap, bus.msg("Head"), bus.msg("ClassInfo"), bus.stamp()), snap


def oversized_head_msg(bus: Any, extractor_hash: str, version: int) -> Any:
    """A well-formed global head with 12 classes: more than the board's buffers (11) and core (10) hold."""
    from tinycl_nodes.core.federated import HeadSnapshot
    from tinycl_nodes.interfaces.heads import to_msg

    rng = np.random.default_rng(version)
    snap = HeadSnapshot(list(range(12)), [str(i) for i in range(12)], [5] * 12, rng.normal(0, 0.1, (12, 64)),
                        np.zeros(12), "CWRStar", extractor_hash, version, 60, "aggregator")
    return to_msg(snap, bus.msg("Head"), bus.msg("ClassInfo"), bus.stamp())


# ------------------------------------------------------------------------------------------ the fleet round
FLEET = "boards"
PEERS = {"devA": 8, "devB": 9}     # each peer device's own new digit (the board starts with 0-7)
#: what each peer's person named its digit: names as long as any node keeps (core.names), one of them as many bytes
PEER_NAMES = {8: "\U0001d7d6" * 64,    # 64 × MATHEMATICAL BOLD DIGIT EIGHT: 256 bytes of UTF-8
              9: "Neun – Ziffer, von Gerät B gelernt (Frühschicht, Halle Süd, T3)."}   # 64 characters, 69 bytes


class FleetRound:
    """The board as one device of a fleet, as ``make demo-fleet`` runs one.

    A real mosquitto with TLS and one identity (certificate + password, ACL) per device and for the aggregator
    (``fleet.broker.generate``, what ``tinycl fleet setup`` writes); the board's ``mqtt_bridge`` node (its own
    process on the board's namespace, dds backend) takes the board's latched ``head`` to MQTT and hands the global
    head back on ``global_head``; two peer devices, each its real bridge on its own bus, share a CWR* head learned
    on digits 0-7 and their own new digit (``PEERS``); the aggregator (in this process) closes the round.
    """

    def __init__(self, work: Path, model_hash: str, data: str | None, seed: int, init_classes: tuple[int, ...],
                 domain: int) -> None:
        from tinycl_nodes.bus import LATCHED, create_bus
        from tinycl_nodes.bus.local import LocalGraph
        from tinycl_nodes.fleet.aggregator import Aggregator, AggregatorParams
        from tinycl_nodes.fleet.broker import Broker, current_user, free_port, generate
        from tinycl_nodes.interfaces.heads import to_msg
        from tinycl_nodes.nodes.mqtt_bridge import BridgeParams, MqttBridge

        for old in ("broker", "aggregator", "bridge_state"):   # a fresh fleet: no retained heads or state of a last run
            shutil.rmtree(work / old, ignore_errors=True)
        # a loopback broker for this run, in the build folder wherever the checkout is (maybe under 0700 /root):
        # it runs as whoever runs the demo
        self.setup = generate(work / "broker", FLEET, [DEVICE, *PEERS], port=free_port(), user=current_user())
        self.broker = Broker(self.setup, log_path=work / "mosquitto.log").start()
        self.peers: list[tuple[Any, Any, Any]] = []
        self.procs: dict[str, subprocess.Popen] = {}
        self.agg = None
        try:
            self.procs["mqtt_bridge"] = subprocess.Popen(
                [sys.executable, "-m", "tinycl_nodes.nodes.mqtt_bridge", "--ros-args", "-r", f"__ns:=/{DEVICE}/tinycl",
                 "-p", f"fleet:={FLEET}", "-p", f"device:={DEVICE}", "-p", f"broker_dir:={self.setup.directory}",
                 "-p", f"extractor_hash:={model_hash}", "-p", "period_s:=1.0", "-p", "min_interval_s:=0.5",
                 "-p", "poll_s:=0.02", "-p", f"state_dir:={work / 'bridge_state'}"],
                cwd=REPO, env={**os.environ, "ROS_DOMAIN_ID": str(domain)}, stdout=open(work / "bridge.log", "wb"),
                stderr=subprocess.STDOUT)
            for name, digit in PEERS.items():
                g = LocalGraph()
                dev = create_bus("learner", f"/{name}/tinycl", backend="local", graph=g)
                bb = create_bus("mqtt_bridge", f"/{name}/tinycl", backend="local", graph=g)
                bridge = MqttBridge(bb, BridgeParams(fleet=FLEET, device=name, broker_dir=self.setup.directory,
                                                     extractor_hash=model_hash, min_interval_s=0.0))
                snap = trained_head(data, seed + digit, sorted({*init_classes, digit}), model_hash, device=name,
                                    names={digit: PEER_NAMES[digit]})
                dev.create_publisher("head", "Head", LATCHED).publish(
                    to_msg(snap, dev.msg("Head"), dev.msg("ClassInfo"), dev.stamp()))
                bb.spin_once(0.2)           # the bridge takes the latched head (sent once its link is up)
                self.peers.append((dev, bb, bridge))
            self.agg = Aggregator(AggregatorParams(fleet=FLEET, broker_dir=self.setup.directory, extractor_hash=model_hash,
                                                   n_features=64, kind="CWRStar", min_devices=1 + len(PEERS),
                                                   allowed_devices=[DEVICE, *PEERS], state_dir=str(work / "aggregator")))
        except BaseException:
            self.close()
            raise

    def ready(self) -> bool:
        """Whether the aggregator holds a head of every device (the board's through its bridge)."""
        return self.agg is not None and {DEVICE, *PEERS} <= set(self.agg.heads)

    def close(self) -> None:
        stop_processes(self.procs)
        for dev, bb, bridge in self.peers:
            bridge.close()
            bb.shutdown()
            dev.shutdown()
        if self.agg is not None:
            self.agg.close()
        self.broker.stop()


def fleet_round(fr: FleetRound, bus: Any, qemu: Qemu, timeout_s: float = 60.0) -> dict[str, Any]:
    """Close one round with the board in it, once the aggregator holds every device's head (the board's through its
    bridge); the caller times the global head's arrival on the board (``t_round``)."""
    t0 = time.monotonic()
    while not fr.ready():
        if time.monotonic() - t0 > timeout_s:
            held = sorted(fr.agg.heads) if fr.agg else []
            raise DemoError(f"the aggregator got heads of {held} only in {timeout_s:.0f} s, not of every device "
                            f"({DEVICE}, {', '.join(PEERS)}): see bridge.log / mosquitto.log")
        if any(p.poll() is not None for p in fr.procs.values()):
            raise DemoError("the board's mqtt_bridge exited: see bridge.log")
        bus.spin_once(0.05)
    t_round = time.monotonic()
    if not fr.agg.aggregate_now():
        raise DemoError("the aggregator did not close the round (see the log)")
    heads = {d: fr.agg.heads[d] for d in (DEVICE, *PEERS)}
    return {"fleet": FLEET, "broker": f"mosquitto TLS 127.0.0.1:{fr.setup.port}, one certificate + password per device",
            "round": fr.agg.round, "wait_for_every_head_s": round(t_round - t0, 2), "t_round": t_round,
            "heads_in_round": {d: {"version": int(h.version), "classes": [int(c) for c in h.class_ids],
                                   "samples": int(h.counts.sum())} for d, h in heads.items()},
            "global_classes": [int(c) for c in fr.agg.global_head.class_ids]}


# ------------------------------------------------------------------------------------------ host reference
def host_replay(bd: Any, events: list[tuple[int, str, int, int]], global_snap: Any, n_frames: int,
                state: bytes | None = None) -> list[tuple[int, int]]:
    """The host build of the same C core on the same frames, with the board's events at the same frames; from the
    initial labelled samples, or from ``state`` (the TinyNDC state a board restored)."""
    from tinycl_nodes.firmware import Library, TinyNDCC
    from tinycl_nodes.nodes.board import ensure_library
    from tinycl_nodes.presets import CWR_PARAMS
    import logging

    lib: Library = ensure_library(None, True, logging.getLogger("demo_board"))
    ndc = TinyNDCC(lib, lr=CWR_PARAMS["lr"], batch_size=CWR_PARAMS["batch_size"])
    ndc.init_from_labelled(bd.init_x, bd.init_y)
    if state is not None:
        ndc.load_bytes(state)
    xs = [lib.features(img) for img in bd.images[:n_frames]]

    def apply(kind: str, a: int, b: int) -> None:
        if kind == "answer":
            ndc.learn_label(xs[a - 1], b)
        else:
            ndc.load_linear(global_snap.class_ids, global_snap.counts, global_snap.weights, global_snap.extractor_hash)

    def step(i: int) -> tuple[int, int]:
        pred, pseudo, _ = ndc.step(xs[i])
        return -1 if pred is None else pred, pseudo

    return replay_events(events, n_frames, apply, step)


def replay_events(events: list[tuple[int, str, int, int]], n_frames: int, apply: Callable[[str, int, int], None],
                  step: Callable[[int], Any]) -> list[Any]:
    """Frame by frame, the board's logged events at that frame (``apply(kind, a, b)``), then ``step(frame)``:
    the one replay order every host reference of a board run follows."""
    by_frame: dict[int, list] = {}
    for ev in events:
        by_frame.setdefault(ev[0], []).append(ev)
    out = []
    for i in range(n_frames):
        for _, kind, a, b in by_frame.get(i, []):
            apply(kind, a, b)
        out.append(step(i))
    return out


def parse_board_log(lines: list[str]) -> dict[str, Any]:
    """The board's log: predictions per frame, events, counters, log lines, the sample ids of the label requests
    the agent confirmed, the connected spans of sample ids (a span ends at the frame whose publish failed), and the
    boot number the agent's clock gave a board that had no saved one (else None)."""
    preds, events, sent, applied, logs, asked, spans, failed = {}, [], {}, {}, [], set(), [], {}
    boot = None
    last = 0   # sample id of the last frame logged
    for ln in lines:
        f = ln.split()
        if not f:
            continue
        if f[0] == "P" and len(f) == 5:
            preds[int(f[1])] = (int(f[3]), int(f[4]))
            last = int(f[2])
        elif f[0] == "A" and len(f) == 2:
            asked.add(int(f[1]))
        elif f[0] == "EV" and len(f) >= 4:
            events.append((int(f[1]), f[2], int(f[3]), int(f[4]) if len(f) > 4 else 0))
        elif f[0] in ("SENT", "APPLIED"):
            (sent if f[0] == "SENT" else applied).update({k: int(v) for k, v in (x.split("=") for x in f[1:])})
        elif f[0] == "LOG":
            logs.append(ln[4:])
            if ln.startswith(("LOG connected", "LOG reconnected")):
                spans.append([last + 1, None])
            elif ln.startswith("LOG agent lost") and spans:
                spans[-1][1] = last
            elif m := re.match(r"LOG publish on (\w+) failed", ln):
                failed.setdefault(m.group(1), set()).add(last)   # unconfirmed: it may or may not have arrived
            elif m := re.match(r"LOG no saved boot number: this boot is numbered (\d+)", ln):
                boot = int(m.group(1))
    if spans and spans[-1][1] is None:
        spans[-1][1] = last
    return {"predictions": preds, "events": events, "sent": sent, "applied": applied, "log": logs, "asked": asked,
            "spans": [tuple(x) for x in spans], "failed": failed, "boot": boot}


def delivery(spans: list[tuple[int, int]], received: set[int], failed: set[int], sent: set[int] | None = None
             ) -> dict[str, Any]:
    """Which of the board's messages the graph got, per connected span of sample ids.

    A span starts when the board (re)created its entities on the agent; until the graph's DDS has discovered the
    agent's new writers a volatile message has no reader and is lost (ROS 2 semantics, as for any new publisher):
    ``discovery_frames`` counts those frames. After the first message received in a span every message must arrive,
    but for the span's last frame, whose publish found the agent gone, and frames whose publish was not confirmed in
    time (``failed``: they may or may not arrive). ``sent``: the ids actually published (label requests are not
    sent every frame); by default every frame of the span."""
    out: dict[str, list] = {"discovery_frames": [], "missing_after_discovery": []}
    for k, (start, end) in enumerate(spans):
        ids = [i for i in range(start, end + 1) if sent is None or i in sent]
        got = [i for i in ids if i in received]
        if not got:
            out["discovery_frames"].append(None if ids else 0)
            continue
        out["discovery_frames"].append(got[0] - start)
        last_sure = end if k == len(spans) - 1 else end - 1
        out["missing_after_discovery"] += [i for i in ids if got[0] < i <= last_sure and i not in received | failed]
    return out


# ------------------------------------------------------------------------------------------ the run
def send_wire_faults(wire: subprocess.Popen, qemu: Qemu, bus: Any, timeout_s: float = 30.0) -> dict[str, Any] | str:
    """Has the sender ``run``'s ``wire_faults`` started send its broken messages now (a line on its stdin), then waits
    for it to end and for the board's line for each (a latched topic keeps only the last head: the demo's own bad
    input must not come before the board took them). What it sent (``{"faults": {…}, "names": {…}}``: messages
    broken on the wire, and whole ones with a class name no node keeps), or why it sent nothing."""
    said, named = qemu.text().count(DECODE_FAILED), qemu.text().count(NAME_REFUSED)
    try:
        wire.stdin.write("go\n")
        wire.stdin.close()
    except OSError as exc:                     # it ended already (no reader matched, …)
        return f"not sent: {exc}"
    deadline = time.monotonic() + timeout_s
    while wire.poll() is None and time.monotonic() < deadline:
        bus.spin_once(0.05)
    if wire.poll() is None:
        wire.kill()
        wire.wait(10)
    told = wire.stdout.read().strip().splitlines()
    if wire.returncode != 0 or not told:
        return f"exit {wire.returncode}: {told[-3:]}"
    sent = json.loads(told[-1])
    while (qemu.text().count(DECODE_FAILED) < said + sum(sent["faults"].values())
           or qemu.text().count(NAME_REFUSED) < named + sum(sent["names"].values())) and time.monotonic() < deadline:
        bus.spin_once(0.05)
    return sent


def run(n_stream: int = 300, period_ms: int = 100, outage_s: float = 10.0, seed: int = 0, classes: str = "0-7",
        data: str | None = None, work: Path | None = None, out: str | None = "results/board.json",
        bad_input: bool = True, timeout_s: float = 600.0, fleet: bool = False,
        wire_faults: Callable[[], subprocess.Popen] | None = None) -> dict:
    """The demo; ``wire_faults`` starts, once the agent runs, a sender of messages broken on the wire to the board (a
    process that sends them when a line comes on its stdin and ends with a JSON line ``{"faults": {name: count},
    "names": {name: count}}``, the second whole messages with a class name no node keeps,
    e.g. ``tests/ros2/wire_faults.py board --on-stdin`` under ROS 2's python): told to at the bad input, before the
    demo's own (``send_wire_faults``); the result says what it sent."""
    from tinycl_nodes.bus import create_bus
    from tinycl_nodes.bus.dds_config import domain_id

    work = Path(work or FW / "build-board")
    work.mkdir(parents=True, exist_ok=True)
    domain = domain_id(None)
    t0 = time.monotonic()
    uros = build_uros()
    t_uros = time.monotonic() - t0
    elf, bd = build_firmware(work, uros["LIBMICROROS"], n_stream, seed, classes, period_ms, domain, data)
    t_app = time.monotonic() - t0 - t_uros
    model_hash = model_sha(work)

    bus = create_bus("board_monitor", f"/{DEVICE}/tinycl", backend="dds", dds_config="loopback")
    from tinycl_nodes.export.c_board import parse_classes
    init_classes = parse_classes(classes)
    # in a fleet round the person answering knows only the board's first classes: the others come from the fleet
    mon = Monitor(bus, bd.labels, model_hash, knows=init_classes if fleet else None)
    fr = FleetRound(work, model_hash, data, seed, init_classes, domain) if fleet else None
    exporter_dir = work / "export"
    exporter = subprocess.Popen([sys.executable, "-m", "tinycl_nodes.nodes.exporter", "--ros-args",
                                 "-r", f"__ns:=/{DEVICE}/tinycl", "-p", "model:=mnist_0to5_int8",
                                 "-p", f"out_dir:={exporter_dir}", "-p", "period_s:=1.0"],
                                cwd=REPO, stdout=open(work / "exporter.log", "wb"), stderr=subprocess.STDOUT)
    (work / "agent.log").unlink(missing_ok=True)
    state_file(work).unlink(missing_ok=True)   # the host replay starts from the initial labelled samples, as the board
    qemu = Qemu(elf, work / "board.log")
    agent = Agent(uros["AGENT"], qemu.pty, work / "agent.log")
    agent.start()
    wire = wire_faults() if wire_faults is not None else None     # started now: ready (matched) by the bad input
    wire_sent: dict[str, int] | str | None = None
    gmsg, gsnap = (None, None) if fleet else global_head_msg(bus, data, seed, model_hash)
    phase, t_restart, t_stop, reconnect_graph_s = "run", None, None, None
    fleet_info: dict[str, Any] = {}
    # the outage is placed so that the stream goes on for RECONNECT_TAIL_S after the restart: the board reconnects and
    # the graph discovers the agent's new writers in that time (a fixed fraction of the stream left a 90-frame run
    # 1 frame after its reconnect, and the graph none at all when reconnecting took longer)
    global_at = int(0.3 * n_stream)
    outage_at = n_stream - math.ceil((outage_s + RECONNECT_TAIL_S) * 1000 / period_ms)
    if outage_at <= global_at:
        raise DemoError(f"a stream of {n_stream} frames of {period_ms} ms is too short for a {outage_s:g} s outage: "
                        f"it needs {RECONNECT_TAIL_S:g} s after the restart and the outage after frame {global_at}")
    seen = 0   # features received when the agent restarted

    def step() -> None:
        """The run's phases, advanced as the board's frames come: bad input and the global head, outage, restart."""
        nonlocal phase, t_restart, t_stop, reconnect_graph_s, seen, fleet_info, gsnap, wire_sent
        frame = max(mon.predictions, default=0)   # the board's latest frame id (from 1; early ones may be lost)
        if phase == "run" and frame >= global_at:
            if wire is not None:   # at the bad input: before it, the board's status on /diagnostics is OK a while
                wire_sent = send_wire_faults(wire, qemu, bus)
            if bad_input:   # each one waits for the board's line: a latched topic keeps only the last head
                for send, line in ((lambda: mon.answer(f"{DEVICE}-999999", 3), "unknown request"),
                                   (lambda: mon.global_pub.publish(global_head_msg(bus, data, seed, "f" * 64, 77)[0]),
                                    "another extractor"),
                                   (lambda: mon.global_pub.publish(oversized_head_msg(bus, model_hash, 78)),
                                    DECODE_FAILED)):
                    said = qemu.text().count(line)
                    send()
                    deadline = time.monotonic() + 20.0
                    while qemu.text().count(line) == said and time.monotonic() < deadline:
                        bus.spin_once(0.05)
            if fr is None:
                mon.global_pub.publish(gmsg)
            else:
                fleet_info = fleet_round(fr, bus, qemu)
                gsnap = fr.agg.global_head
            phase = "global"
        elif phase == "global" and frame >= outage_at:
            agent.stop()
            t_stop = time.monotonic()
            phase = "outage"
        elif phase == "outage" and time.monotonic() - t_stop >= outage_s:
            agent.start()
            t_restart = time.monotonic()
            seen = mon.received["features"]
            phase = "restarted"
        elif phase == "restarted" and mon.received["features"] > seen:
            reconnect_graph_s = round(time.monotonic() - t_restart, 2)
            phase = "reconnected"
        if fleet_info.get("t_round") and "applied_s" not in fleet_info and re.search(r"EV \d+ global 1\b", qemu.text()):
            fleet_info["applied_s"] = round(time.monotonic() - fleet_info.pop("t_round"), 2)

    try:
        spin_until_done(qemu, bus, timeout_s, step)
        deadline = time.monotonic() + 2.0   # the last messages in flight
        while time.monotonic() < deadline:
            bus.spin_once(0.05)
    finally:
        agent.stop()
        qemu.stop()
        stop_processes({"exporter": exporter})
        bus.shutdown()
        if fr is not None:
            fr.close()
    if wire is not None and wire.poll() is None:     # the run ended before its bad input
        wire.kill()
        wire.wait(10)
    board = parse_board_log(qemu.lines())
    n = len(board["predictions"])
    host = host_replay(bd, board["events"], gsnap, n)
    same = sum(board["predictions"].get(i) == host[i] for i in range(n))
    preds = np.array([board["predictions"][i][0] for i in range(n)])
    acc = float(np.mean(preds == bd.labels[:n])) if n else 0.0
    # the board's own figure: from when it noticed the agent was gone (a failed ping or publish) to its reconnect, so
    # it holds most of the outage; one per reconnect
    reconnect_board = [float(m.group(1)) / 1e3 for ln in board["log"] if (m := re.search(r"reconnected (\d+) ms", ln))]
    before_outage = board["log"][:next((i for i, ln in enumerate(board["log"]) if "agent lost" in ln),
                                       len(board["log"]))]
    before = [i for i, kind, _, _ in board["events"] if kind == "global"]
    g_at = before[0] if before else n
    result = {
        "chain": "QEMU mps2-an500 (Cortex-M7) ⇄ UART0 pty ⇄ MicroXRCEAgent v2.3.0 serial (Fast DDS 2.9) ⇄ Cyclone DDS (dds backend)",
        "frames": n, "stream_length": n_stream, "frame_period_ms": period_ms, "init_classes": classes, "seed": seed,
        "messages": {t: {"sent_by_board": board["sent"].get(t, 0), "received_by_graph": mon.received[t]} for t in TOPICS},
        "publish_failures": board["sent"].get("failed", 0),
        "delivery": {t: delivery(board["spans"], mon.ids[t], board["failed"].get(t, set()),
                                 board["asked"] if t == "label_request" else None) for t in mon.ids},
        "connected_spans": board["spans"],
        "decode_errors_on_graph": mon.errors[:10],
        "diagnostics": {"statuses": len(mon.statuses), "sent_by_board": board["sent"].get("diagnostics", 0),
                        "levels": sorted({st["level"] for st in mon.statuses}),
                        "hardware_ids": sorted({st["hardware_id"] for st in mon.statuses}),
                        "messages": sorted({st["message"] for st in mon.statuses if st["level"]}),
                        "max": {k: max(int(st["values"][k]) for st in mon.statuses) for k in
                                ("messages_received", "bad_input_dropped", "agent_reconnects", "publish_failures")
                                if mon.statuses},
                        "last": mon.statuses[-1] if mon.statuses else None},
        "heads_decoded": len(mon.heads), "last_head": None if not mon.heads else {
            "version": mon.heads[-1].version, "classes": mon.heads[-1].class_ids.tolist(), "kind": mon.heads[-1].kind,
            "n_seen": mon.heads[-1].n_seen,
            "names": dict(zip(mon.heads[-1].class_ids.tolist(), mon.heads[-1].class_names))},
        "label_answers": {"sent": len(mon.answered), "applied_by_board": board["applied"].get("answers", 0)},
        "global_head": {"applied_by_board": board["applied"].get("global", 0), "at_frame": g_at,
                        "classes": None if gsnap is None else gsnap.class_ids.tolist()},
        "refused_by_board": board["applied"].get("refused", 0),
        "board_log_refusals": [ln for ln in board["log"] if "dropped" in ln][:20],
        # before the outage: after the reconnect the board's new reader may take a latched head again (the large one)
        "could_not_be_decoded_before_the_outage": sum(DECODE_FAILED in ln for ln in before_outage),
        "name_refusals_before_the_outage": sum(NAME_REFUSED in ln for ln in before_outage),
        "wire_faults_sent": wire_sent,
        "accuracy": {"board": round(100 * acc, 2),
                     "before_global_head": round(100 * float(np.mean(preds[:g_at] == bd.labels[:g_at])), 2) if g_at else None,
                     "after_global_head": round(100 * float(np.mean(preds[g_at:] == bd.labels[g_at:n])), 2) if g_at < n else None,
                     "new_classes_before_global": _acc_on(preds[:g_at], bd.labels[:g_at], init_classes),
                     "new_classes_after_global": _acc_on(preds[g_at:], bd.labels[g_at:n], init_classes),
                     "predicted_classes_before_global": sorted(set(preds[:g_at].tolist())),
                     "predicted_classes_after_global": sorted(set(preds[g_at:].tolist()))},
        "host_build": {"identical_predictions_and_pseudo_labels": int(same), "of": n},
        "fleet_round": None if fr is None else {
            **fleet_info, "board_head_classes_after": None if not mon.heads else mon.heads[-1].class_ids.tolist(),
            "bridge_handed_global_to_board": "global head round 1" in (work / "bridge.log").read_text(errors="replace"),
            "label_requests_left_unanswered": mon.unanswered},
        "agent_outage_s": outage_s,
        "reconnect": {"board_after_loss_noticed_s": reconnect_board, "graph_first_message_after_restart_s": reconnect_graph_s,
                      "board_reconnects": board["applied"].get("reconnects", 0)},
        "export": sorted(p.name for p in exporter_dir.glob("*")) if exporter_dir.exists() else [],
        "firmware": {"elf": str(elf), **elf_size(elf)},
        "build_s": {"uros_cached_or_built": round(t_uros, 1), "app": round(t_app, 1)},
        "wall_s": round(time.monotonic() - t0, 1),
    }
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1))
    return result


def _acc_on(preds: np.ndarray, labels: np.ndarray, init_classes: tuple[int, ...]) -> dict[str, Any]:
    """Accuracy (%) on the frames of the classes the board had no labelled sample of at start."""
    m = ~np.isin(labels, init_classes)
    return {"frames": int(m.sum()), "accuracy": round(100 * float(np.mean(preds[m] == labels[m])), 2) if m.any() else None}


def report(r: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"micro-ROS board on the graph: {r['frames']} frames, agent stopped {r['agent_outage_s']:.0f} s mid-run")
    for col in ("topic", "sent by the board", "received by the graph"):
        t.add_column(col, justify="left" if col == "topic" else "right")
    for topic, m in r["messages"].items():
        t.add_row(topic, str(m["sent_by_board"]), str(m["received_by_graph"]))
    c = Console()
    c.print(t)
    a = r["accuracy"]
    c.print(f"board accuracy {a['board']:.2f}% (before the global head {a['before_global_head']}%, after "
            f"{a['after_global_head']}%); identical to the host build: {r['host_build']['identical_predictions_and_pseudo_labels']}"
            f" of {r['host_build']['of']} frames")
    c.print(f"label answers applied {r['label_answers']['applied_by_board']} of {r['label_answers']['sent']}; global head "
            f"applied {r['global_head']['applied_by_board']}; bad input refused by the board: {r['refused_by_board']}")
    rc = r["reconnect"]
    board_s = ", ".join(f"{s:.2f} s" for s in rc["board_after_loss_noticed_s"])
    graph_s = rc["graph_first_message_after_restart_s"]
    c.print(f"reconnect (agent stopped {r['agent_outage_s']:g} s): "
            + (f"the board reconnected {board_s} after it noticed the agent was gone" if board_s else
               "the board never reconnected")
            + ("; no message on the graph after the agent's restart" if graph_s is None else
               f"; first message on the graph {graph_s:.2f} s after the agent's restart"))
    if f := r.get("fleet_round"):
        c.print(f"fleet round {f['round']} ({f['broker']}): heads of {', '.join(f['heads_in_round'])} merged, global "
                f"classes {f['global_classes']}; global head applied on the board {f.get('applied_s')} s after the "
                f"round closed; board head classes {f['heads_in_round'][DEVICE]['classes']} → "
                f"{f['board_head_classes_after']}; predicted classes {a['predicted_classes_before_global']} → "
                f"{a['predicted_classes_after_global']}; accuracy on the classes it had no sample of "
                f"{a['new_classes_before_global']['accuracy']}% → {a['new_classes_after_global']['accuracy']}%")
    d = r["delivery"]["features"]
    c.print(f"frames the board published before the graph discovered the agent's writers, per connection: "
            f"{d['discovery_frames']}; missing after discovery: {d['missing_after_discovery']}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stream", type=int, default=300)
    ap.add_argument("--period-ms", type=int, default=100)
    ap.add_argument("--outage-s", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classes", default="0-7", help="classes the board starts with labelled samples of")
    ap.add_argument("--data", default=os.environ.get("TINYCL_DATA"))
    ap.add_argument("--out", default="results/board.json")
    ap.add_argument("--fleet", action="store_true",
                    help="the global head comes from a real fleet round: the board's mqtt_bridge, a TLS mosquitto, "
                         "two peer devices and the aggregator (else the monitor publishes one)")
    ap.add_argument("--build-only", action="store_true", help="build agent, libmicroros.a and the firmware, then stop")
    a = ap.parse_args(argv)
    try:
        return _main(a)
    except (DataError, InputError) as exc:   # a mistake in the command line or data: one line, no traceback
        print(f"demo_board: {exc}", file=sys.stderr)
        return 2
    except DemoError as exc:
        print(f"demo_board: {exc}", file=sys.stderr)
        return 1


def _main(a: argparse.Namespace) -> int:
    from tinycl_nodes.bus.dds_config import domain_id
    from tinycl_nodes.datasets import load_mnist
    from tinycl_nodes.export.c_board import parse_classes

    parse_classes(a.classes)   # before any build: a bad value, a missing data folder or domain id is said at once
    load_mnist("test", a.data)
    try:
        domain = domain_id(None)   # $ROS_DOMAIN_ID, else 0: the board's domain is built into the firmware
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if a.build_only:
        t0 = time.monotonic()
        uros = build_uros()
        elf, _ = build_firmware(FW / "build-uros", uros["LIBMICROROS"], a.stream, a.seed, a.classes, a.period_ms,
                                domain, a.data)
        print(f"agent {uros['AGENT']}\nlibmicroros {uros['LIBMICROROS']} ({uros['seconds']} s)\nfirmware {elf}: "
              f"{elf_size(elf)} (total {time.monotonic() - t0:.1f} s)")
        return 0
    # a SIGTERM (timeout, Ctrl-C of make) unwinds like an error: QEMU, the agent and the exporter are stopped (set
    # here, not in run(): a test that calls run() in its own process keeps its handlers)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    r = run(a.stream, a.period_ms, a.outage_s, a.seed, a.classes, a.data, out=a.out, fleet=a.fleet)
    report(r)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
