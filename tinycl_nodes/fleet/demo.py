"""`make demo-fleet`: three TinyNDC devices learn different new digits, one federated round merges them.

Every device is a whole TinyNDC graph (sensor → extractor → labeler → learner, plus an
``mqtt_bridge``) in its own namespace ``/<device>/tinycl``, each node its own process. Where network
namespaces can be made (root), each device is its own host and the broker and the aggregator run on
host ``cloud`` (``tinycl_nodes.netns``: a private bridge, host names; the bridges reach the broker
by name over TLS with hostname verification; DDS over the hosts' ``eth0``, multicast); elsewhere
everything runs on one loopback. All devices start from the protocol's labelled samples of all ten digits (k per
class, from the training set); then each replays only digits 0–5 and *its* new digits of the test
stream (``sensor.stream_classes``): by default A sees 6 and 7, B sees 8, C sees 9. The heads go
through a real mosquitto (TLS, client certificates, ACL: ``fleet/broker.py``) to the aggregator
(``fleet/aggregator.py``, run here in-process), which closes exactly one round once it holds every
device's final head; the bridges hand the global head to the learners (and labelers), which merge
it (``global_policy``) and republish.

Scoring, in this process: the frozen features of the held-out test samples (the 2,000 of the
seed's permutation that no device streamed) are classified by each device's published head
before and after the round, and by the global head. The target (issue 5): after one round, every
device's accuracy on each new class it never saw is at least 90% of the accuracy on that class of
the device that learned it (before the round). Results: ``results/fleet.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ..bus import create_bus
from ..bus.dds_config import network_config
from ..core.errors import TinyclError
from ..core.federated import HeadSnapshot, Moments, resolve_policy
from ..core.prior_worth import prior_meta, prior_taken, weighed
from ..graphs import GRAPHS
from ..arg_types import count, output_file
from ..launcher import config_path, graph_commands, node_settings, start_graph
from ..model_prior import load_prior
from ..nodes.learner import HEAD_PRESETS, head_kind
from ..nodes.runner import read_params_file, sections_params
from ..interfaces.heads import from_msg

OLD = list(range(6))
NEW = [6, 7, 8, 9]
TARGET_RATIO = 0.9
STALL_S = 60.0


def _config(cfg: Path) -> dict[str, Any]:
    """The fleet's parameter file, read once and checked as each node checks it (``runner.read_params_file``: one
    error line naming the file if it is not YAML, or not sections of ``ros__parameters``)."""
    doc = read_params_file(cfg, "demo_fleet")
    sections_params(doc, cfg, "demo_fleet", "/")      # its own section, demo_fleet, and /**
    return doc


def _section(doc: dict, key: str) -> dict[str, Any]:
    return dict((doc.get(key) or {}).get("ros__parameters", {}) or {})


def _wait(cond: Any, timeout_s: float, what: str, check: Any = None) -> Any:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        v = cond()
        if v:
            return v
        if check is not None:
            check()
        time.sleep(0.05)
    raise TinyclError(f"demo-fleet: {what} within {timeout_s:.0f} s")


class _Observer:
    """Counts each device's predictions and keeps every Head it publishes (one bus, absolute topics)."""

    def __init__(self, bus: Any, devices: list[str]) -> None:
        self.lock = threading.Lock()
        self.preds = {d: 0 for d in devices}
        self.heads: dict[str, list[HeadSnapshot]] = {d: [] for d in devices}
        for d in devices:
            bus.create_subscription(f"/{d}/tinycl/predictions", "Prediction", self._count(d), "reliable")
            bus.create_subscription(f"/{d}/tinycl/head", "Head", self._head(d), "latched")

    def _count(self, d: str) -> Any:
        def cb(msg: Any) -> None:
            self.preds[d] += 1
        return cb

    def _head(self, d: str) -> Any:
        def cb(msg: Any) -> None:
            snap = from_msg(msg, device=d)
            with self.lock:
                self.heads[d].append(snap)
        return cb

    def latest(self, d: str) -> HeadSnapshot | None:
        with self.lock:
            return self.heads[d][-1] if self.heads[d] else None


def _accuracy(head: HeadSnapshot, X: np.ndarray, y: np.ndarray) -> dict[str, float]:
    p = head.predict(X)
    out = {"all": 100.0 * float(np.mean(p == y)), "old_0_5": 100.0 * float(np.mean(p[np.isin(y, OLD)] == y[np.isin(y, OLD)]))}
    for c in range(10):
        m = y == c
        out[str(c)] = 100.0 * float(np.mean(p[m] == c)) if m.any() else float("nan")
    return out


def run_demo_fleet(config: str | None = None, devices: dict[str, list[int]] | None = None,
                   stream_length: int | None = None, seed: int | None = None, policy: str | None = None,
                   preset: str | None = None,
                   method: str | None = None, out: str | None = "results/fleet.json",
                   console: Console | None = None, domain: int | None = None, data_dir: str | None = None,
                   log_file: str | None = None, hosts: bool | None = None) -> dict:
    """Run the fleet demo (see module docstring); return the results and write them to ``out``.

    ``None`` arguments come from the parameter file (``config/fleet.yaml`` by default). Node logs
    go to ``log_file`` (default: a file next to ``out``; the console keeps the progress bars).
    ``policy`` ``add``: the exact rule (bridges in exact mode, docs/fleet.md "Rounds for weeks"),
    which also takes the streaming-LDA preset ``tinycl`` (``preset``).
    ``hosts``: every device on its own host and broker + aggregator on ``cloud`` (network
    namespaces, ``tinycl_nodes.netns``; needs root); ``None``: so where namespaces can be made,
    else all on loopback.
    """
    from ..netns import HostNet, available

    why = available()
    if hosts and why:
        raise TinyclError(f"demo-fleet: separate hosts need network namespaces: {why}")
    if hosts is False or (hosts is None and why):
        return _run_demo_fleet(config, devices, stream_length, seed, policy, preset, method, out, console, domain,
                               data_dir, log_file, None)
    cfg = config_path("fleet", config)
    names = list(devices or _section(_config(cfg), "demo_fleet").get("devices") or {})
    with HostNet(["cloud", *map(str, names)]) as net:
        return net.call_in("cloud", lambda: _run_demo_fleet(config, devices, stream_length, seed, policy, preset,
                                                            method, out, console, domain, data_dir, log_file, net),
                           timeout=24 * 3600)


def _run_demo_fleet(config: str | None, devices: dict[str, list[int]] | None, stream_length: int | None,
                    seed: int | None, policy: str | None, preset: str | None, method: str | None, out: str | None,
                    console: Console | None, domain: int | None, data_dir: str | None, log_file: str | None,
                    net: Any) -> dict:
    from .aggregator import Aggregator, AggregatorParams
    from .broker import Broker, current_user, free_port, generate

    console = console or Console(width=None if sys.stdout.isatty() else 132)
    cfg = config_path("fleet", config)
    doc = _config(cfg)
    demo = _section(doc, "demo_fleet")
    common = _section(doc, "/**")
    devices = {str(d): [int(c) for c in cs] for d, cs in (devices or demo.get("devices") or {}).items()}
    if len(devices) < 2:
        raise TinyclError("demo-fleet: at least two devices are needed")
    names = list(devices)
    fleet = str(demo.get("fleet", "demo"))
    method = method or str(demo.get("method", "fedavg"))
    policy = policy or str(common.get("global_policy", "auto"))
    preset = preset or str(common.get("preset", "tinyndc"))
    exact = resolve_policy(policy, head_kind(preset)) == "add"
    # the devices' replay, checked as their sensor nodes will take it (a stream length of -5 started them all)
    given = {"stream_length": stream_length, "seed": seed, "data_dir": data_dir}
    replay = {"sensor": {name: str(v) for name, v in given.items() if v is not None}}
    sensor = node_settings(graph_commands("tinyndc", str(cfg), "/", replay, nodes=["sensor"],
                                          other_sections=("demo_fleet",)))["sensor"]
    k, n_stream, seed = sensor.labels_per_class, sensor.stream_length, sensor.seed
    if domain is None:
        from ..bus.dds import unconfigured_domain
        domain = os.environ.get("ROS_DOMAIN_ID") or unconfigured_domain(100, 100)
    domain = int(domain)

    # what each device will replay, and the held-out samples nobody streams (scored in process)
    from ..datasets import load_mnist
    from ..experiments.tinyndc import load_extractor, split_indices
    _, ytr = load_mnist("train", data_dir)
    Xte, yte = load_mnist("test", data_dir)
    _, stream, held = split_indices(seed, ytr, yte, n_stream, k)
    seen = {d: OLD + sorted(set(cs) - set(OLD)) for d, cs in devices.items()}
    expected = {d: 10 * k + int(np.isin(yte[stream], seen[d]).sum()) for d in names}

    work = Path(tempfile.mkdtemp(prefix="tinycl-fleet-"))
    log_path = Path(log_file) if log_file else (Path(out).with_suffix(".log") if out else work / "nodes.log")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "w")  # noqa: SIM115 - the node-log pumps write to it until the graphs stop
    dds_config = common.get("dds_config", "loopback")
    me = current_user()      # a throwaway broker in a private temp folder (0700): it runs as whoever runs the demo
    if net is not None:      # devices on their own hosts, broker on cloud; DDS over the bridge (multicast)
        setup = generate(work / "broker", fleet, names, port=8883, host="cloud", ip=net.ip("cloud"), user=me)
        dds_config = str(work / "cyclonedds-net.xml")
        Path(dds_config).write_text(network_config("eth0"))
    else:
        setup = generate(work / "broker", fleet, names, port=free_port(), user=me)
    broker = Broker(setup, net=net, on="cloud").start()
    bus = create_bus("fleet_demo", "/", backend="dds", dds_config=dds_config, domain=domain)
    obs = _Observer(bus, names)
    spin_stop = threading.Event()

    def spin() -> None:
        while not spin_stop.is_set():
            bus.spin_once(0.05)
    spinner = threading.Thread(target=spin, daemon=True)
    spinner.start()
    graphs: dict[str, Any] = {}
    agg = None
    finished = False
    t0 = time.monotonic()
    try:
        for d in names:
            state = work / "state" / d
            ov = {"sensor": {"stream_classes": json.dumps(seen[d]), "stream_length": str(n_stream), "seed": str(seed)},
                  "learner": {"state_dir": str(state), "global_policy": policy, "preset": preset,
                              "with_state": str(exact).lower()},
                  "labeler": {"state_dir": str(state), "global_policy": policy, "preset": preset},
                  "mqtt_bridge": {"fleet": fleet, "device": d, "broker_dir": setup.directory,
                                  "exact": str(exact).lower(), "state_dir": str(state)}}
            if data_dir:
                ov["sensor"]["data_dir"] = data_dir
            if net is not None:
                ov["*"] = {"dds_config": dds_config}
            wrap = {n: net.command(d, []) for n in GRAPHS["fleet_device"]} if net is not None else None
            graphs[d] = start_graph("tinyndc", str(cfg), f"/{d}/tinycl", ov, env={"ROS_DOMAIN_ID": str(domain)},
                                    log_stream=log, nodes=list(GRAPHS["fleet_device"]), wrap=wrap,
                                    other_sections=("demo_fleet",))
        where = (f"each on its own host ({', '.join(names)}), mosquitto (TLS) and the aggregator on host cloud "
                 f"({setup.ip}:{setup.port})" if net is not None else f"mosquitto (TLS) on 127.0.0.1:{setup.port}")
        console.print(f"[bold]fleet {fleet!r}[/]: {len(names)} devices × {len(GRAPHS['fleet_device'])} processes on DDS "
                      f"domain {domain}, {where}; node logs: {log_path}")

        def check_alive() -> None:
            for d, g in graphs.items():
                dead = [n for n, p in g.procs.items() if p.poll() is not None and (p.returncode != 0 or n != "sensor")]
                if dead:
                    raise TinyclError(f"demo-fleet: {d}: node(s) {', '.join(dead)} exited (see {log_path})")

        # the held-out features, while the devices start
        extractor = load_extractor(str(common.get("model", "mnist_0to5_fp32")))
        Xh, yh = extractor.extract(Xte[held]), yte[held].astype(np.int64)

        # 1. every device streams its classes
        with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), console=console) as bar:
            tasks = {d: bar.add_task(f"{d} (digits {','.join(map(str, seen[d]))})", total=expected[d]) for d in names}
            last, last_change = -1, time.monotonic()
            def learned(d: str) -> int:   # the latched head is the reliable count; predictions the smooth one
                h = obs.latest(d)
                return max(obs.preds[d], h.n_seen if h is not None else 0)
            while any((h := obs.latest(d)) is None or h.n_seen < expected[d] for d in names):
                time.sleep(0.1)
                total = sum(learned(d) for d in names)
                for d in names:
                    bar.update(tasks[d], completed=min(learned(d), expected[d]))
                if total != last:
                    last, last_change = total, time.monotonic()
                elif time.monotonic() - last_change > STALL_S:
                    raise TinyclError(f"demo-fleet: no prediction for {STALL_S:.0f} s ({obs.preds} of {expected})")
                check_alive()
        stream_s = time.monotonic() - t0

        # 2. each device's final head (every sample learned) is "before"
        before = {d: obs.latest(d) for d in names}

        # 3. one round: the aggregator takes every device's final head from the broker, then aggregates
        agg = Aggregator(AggregatorParams(fleet=fleet, broker_dir=setup.directory, method=method,
                                          mqtt_host=setup.ip if net is not None else "",
                                          kind=head_kind(preset),
                                          model=str(common.get("model", "mnist_0to5_fp32")),
                                          min_devices=len(names), allowed_devices=names,
                                          state_dir=str(work / "aggregator")))
        _wait(lambda: all(d in agg.heads and agg.heads[d].version >= before[d].version for d in names), 30,
              "the aggregator did not receive every device's final head", check_alive)
        if not agg.aggregate_now():
            raise TinyclError("demo-fleet: the round was not aggregated (see the log)")
        glob = agg.global_head
        t_round = time.monotonic()

        # 4. every learner merges it and republishes its head: "after"
        _wait(lambda: all((h := obs.latest(d)) is not None and h.version > before[d].version for d in names), 30,
              "not every device merged the global head", check_alive)
        merge_s = time.monotonic() - t_round
        after = {d: obs.latest(d) for d in names}
        finished = True
    finally:
        codes = {d: g.stop() for d, g in graphs.items()}
        if agg is not None:
            agg.close()
        spin_stop.set()
        spinner.join(2)
        bus.shutdown()
        broker.stop()
        log.close()
        if not finished:       # an error or Ctrl-C: the devices' states and the broker's files are of no more use
            shutil.rmtree(work, ignore_errors=True)
    replicas = _replicas_in_sync(work / "state", names)
    taken = _prior_taken(work / "state", names)
    shutil.rmtree(work, ignore_errors=True)
    assert glob is not None

    # what a device holds after the round: the fleet's learning and, in exact mode, the class statistics its head
    # started from, as its labelled samples weighed them (FleetMember.baseline: never shared, given back to every
    # device); the devices start from the same labelled samples here, so the first one's stands for all
    prior = load_prior(extractor.path, extractor.hash) if exact and HEAD_PRESETS[preset](1, "").model_prior else None
    if prior is not None and taken[names[0]] is not False:
        held = (Moments.of(glob) + Moments.of(weighed(prior, taken[names[0]]))).snapshot(
            glob.kind, glob.extractor_hash, glob.version, glob.n_seen, "global")
    else:
        held = glob
    result = _score(devices, seen, before, after, glob, held, Xh, yh)
    result.update({"fleet": fleet, "devices": {d: {"stream_classes": seen[d], "samples": expected[d]} for d in names},
                   "seed": seed, "labels_per_class": k, "stream_length": n_stream, "preset": preset,
                   "hosts": (["cloud", *names] if net is not None else ["127.0.0.1"]),
                   "policy": policy, "method": method, "held_out": int(yh.size), "dds_domain": domain,
                   "labeler_replica_equals_learner_head": replicas,
                   "model_prior_taken": {d: prior_meta(t) for d, t in taken.items()},
                   "timing_s": {"streams": round(stream_s, 2), "round_to_merged": round(merge_s, 2),
                                "wall": round(time.monotonic() - t0, 2)},
                   "exit_codes": codes})
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(result, indent=1))
    report(console, result)
    return result


def _prior_taken(state_root: Path, names: list[str]) -> dict[str, bool | float]:
    """What each learner's head took of the model's class statistics (its saved meta's ``model_prior``)."""
    from ..storage import load_states

    return {d: prior_taken(load_states(state_root / d / "learner.state")["head"]["meta"].get("model_prior"))
            for d in names}


def _replicas_in_sync(state_root: Path, names: list[str]) -> dict[str, bool | None]:
    """Whether each labeler's head replica equals its learner's head (from the states saved at exit)."""
    from ..storage import load_states

    out: dict[str, bool | None] = {}
    for d in names:
        try:
            a = load_states(state_root / d / "learner.state")["head"]["arrays"]
            b = load_states(state_root / d / "labeler.state")["head"]["arrays"]
            keys = ("classes", "cw", "past") if "cw" in a else ("classes", "means", "counts", "scatter")
            # SLDA's scatter sums rank-1 terms in batches that the two nodes flush at different
            # moments: equal to float rounding (~1e-12), not bit for bit
            out[d] = all(np.asarray(a[key]).shape == np.asarray(b[key]).shape
                         and np.allclose(np.asarray(a[key]), np.asarray(b[key]), rtol=1e-9, atol=1e-9)
                         for key in keys)
        except Exception:  # noqa: BLE001 - informative only
            out[d] = None
    return out


def _score(devices: dict[str, list[int]], seen: dict[str, list[int]], before: dict[str, HeadSnapshot],
           after: dict[str, HeadSnapshot], glob: HeadSnapshot, held: HeadSnapshot, X: np.ndarray,
           y: np.ndarray) -> dict:
    """Accuracies before and after the round; ``glob`` the aggregator's head, ``held`` the head it makes on a device
    (with the class statistics the devices started from)."""
    names = list(devices)
    acc_b = {d: _accuracy(before[d], X, y) for d in names}
    acc_a = {d: _accuracy(after[d], X, y) for d in names}
    acc_g = _accuracy(held, X, y)
    # who learned each new class: the devices whose stream had it (best of them is the reference)
    owners = {c: [d for d in names if c in seen[d]] for c in NEW}
    ref = {c: max((acc_b[d][str(c)] for d in owners[c]), default=float("nan")) for c in NEW}
    relation = []
    for d in names:
        for c in NEW:
            if c in seen[d] or not owners[c]:
                continue
            ratio = acc_a[d][str(c)] / ref[c] if ref[c] > 0 else float("nan")
            relation.append({"device": d, "class": c, "learned_by": owners[c], "reference": round(ref[c], 2),
                             "before": round(acc_b[d][str(c)], 2), "after": round(acc_a[d][str(c)], 2),
                             "ratio": round(ratio, 4)})
    learned = sorted({c for d in names for c in seen[d]})
    min_ratio = min((r["ratio"] for r in relation), default=float("nan"))
    return {
        "before": {d: _round(acc_b[d]) for d in names},
        "after": {d: _round(acc_a[d]) for d in names},
        "global": _round(acc_g) | {"classes": [int(c) for c in glob.class_ids],
                                   "counts": {str(int(c)): int(n) for c, n in zip(glob.class_ids, glob.counts)}},
        "unseen_relation": relation,
        "targets": {"global_knows_every_learned_class": set(learned) <= {int(c) for c in glob.class_ids},
                    "every_device_knows_every_class_after": all(set(learned) <= {int(c) for c in after[d].class_ids}
                                                               for d in names),
                    "min_ratio_unseen_vs_learner": round(min_ratio, 4), "ratio_target": TARGET_RATIO,
                    "ratio_met": bool(min_ratio >= TARGET_RATIO)},
    }


def _round(acc: dict[str, float]) -> dict[str, float]:
    return {k: round(v, 2) for k, v in acc.items()}


def report(console: Console, r: dict) -> None:
    """Rich tables of a result of :func:`run_demo_fleet`."""
    cols = ["all", "old_0_5", *[str(c) for c in NEW]]
    t = Table(title=f"Fleet of {len(r['devices'])} TinyNDC devices, one round ({r['method']} → {r['policy']}), "
                    f"accuracy (%) on {r['held_out']:,} held-out MNIST test samples")
    t.add_column("head")
    t.add_column("stream digits")
    for c in cols:
        t.add_column({"all": "all 0–9", "old_0_5": "0–5"}.get(c, c), justify="right")
    for d, info in r["devices"].items():
        own = set(info["stream_classes"])
        for phase in ("before", "after"):
            acc = r[phase][d]
            cells = []
            for c in cols:
                v = f"{acc[c]:.1f}"
                if c.isdigit() and int(c) not in own:
                    v = f"[dim]{v}[/]" if phase == "before" else f"[bold green]{v}[/]"
                cells.append(v)
            t.add_row(f"{d} {phase}", ("0–5 + " + ",".join(str(c) for c in sorted(own - set(OLD))))
                      if phase == "before" else "",
                      *cells, end_section=phase == "after")
    g = r["global"]
    t.add_row("[bold]global head", "round 1", *[f"[bold]{g[c]:.1f}" for c in cols])
    t.caption = "dim: a new digit the device never streamed (it knows it from its 10 labelled samples only)"
    console.print(t)

    u = Table(title=f"Digits a device never saw: after the round vs the device that learned them "
                    f"(target ≥ {100 * r['targets']['ratio_target']:.0f}%)")
    for col in ("device", "digit", "learned by", "theirs (%)", "before (%)", "after (%)", "ratio"):
        u.add_column(col, justify="left" if col in ("device", "learned by") else "right")
    for x in r["unseen_relation"]:
        ok = x["ratio"] >= r["targets"]["ratio_target"]
        u.add_row(x["device"], str(x["class"]), ",".join(x["learned_by"]), f"{x['reference']:.1f}",
                  f"{x['before']:.1f}", f"{x['after']:.1f}",
                  f"[{'green' if ok else 'red'}]{100 * x['ratio']:.1f}%[/]")
    tg = r["targets"]
    u.caption = (f"min ratio {100 * tg['min_ratio_unseen_vs_learner']:.1f}% → target "
                 f"{'met' if tg['ratio_met'] else 'MISSED'}; global head knows every learned digit: "
                 f"{tg['global_knows_every_learned_class']}; labeler replicas equal learner heads: "
                 f"{r['labeler_replica_equals_learner_head']}")
    console.print(u)
    ts = r["timing_s"]
    console.print(f"streams {ts['streams']:.1f} s, round → merged on every device {ts['round_to_merged']:.2f} s, "
                  f"wall {ts['wall']:.1f} s")


def main(argv: list[str] | None = None) -> int:
    """``tinycl demo-fleet``."""
    ap = argparse.ArgumentParser(prog="tinycl demo-fleet", description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None, help="parameter file (default: config/fleet.yaml)")
    ap.add_argument("--stream-length", type=count(1), default=None)
    ap.add_argument("--seed", type=count(0), default=None)
    ap.add_argument("--policy", choices=["auto", "blend", "replace", "add"], default=None,
                    help="add: the exact rule (bridges share only their own learning); auto: add for streaming "
                         "LDA, blend for CWR* (default: the config's)")
    ap.add_argument("--preset", choices=["tinyndc", "tinycl"], default=None,
                    help="the devices' preset (tinycl: streaming LDA, merged by add only)")
    ap.add_argument("--method", choices=["fedavg", "median", "trimmed_mean"], default=None)
    ap.add_argument("--data", default=None, help="dataset folder (default: $TINYCL_DATA or ../shared/data)")
    ap.add_argument("--out", type=output_file, default="results/fleet.json")
    ap.add_argument("--domain", type=int, default=None, help="DDS domain (default: $ROS_DOMAIN_ID, else 100 + pid %% 100 or the next one this process has not set up)")
    ap.add_argument("--hosts", action=argparse.BooleanOptionalAction, default=None,
                    help="devices and cloud on separate hosts (network namespaces, root); default: when possible")
    a = ap.parse_args(argv)
    try:
        r = run_demo_fleet(a.config, stream_length=a.stream_length, seed=a.seed, policy=a.policy, preset=a.preset,
                           method=a.method,
                           out=a.out, domain=a.domain, data_dir=a.data, hosts=a.hosts)
    except TinyclError as exc:
        print(f"error: {exc}".replace("\n", "\nerror: "), file=sys.stderr)      # one line each, unwrapped
        return 2
    return 0 if r["targets"]["ratio_met"] and r["targets"]["global_knows_every_learned_class"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
