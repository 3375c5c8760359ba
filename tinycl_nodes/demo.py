"""`make demo`: the TinyNDC graph on MNIST over DDS, five processes, scored like the experiment.

Starts a monitor (ground truth + predictions), then sensor → extractor → labeler → learner →
exporter as separate processes on the dds backend (loopback), shows progress, stops the graph
when every sample has been predicted, and prints the metrics beside the in-process experiment
for the same seed: with no sample lost and none reordered they are identical, prediction for
prediction.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .bus import create_bus
from .core.errors import TinyclError
from .graphs import FINISHER
from .launcher import config_path, graph_commands, node_settings, parse_overrides, start_graph
from .nodes.monitor import Monitor

STALL_S = 60.0
SCORE_LAST = 1000   # scored on the last predictions of the unlabelled stream (as the experiment), or all of a shorter one


def demo_namespace() -> str:
    """The namespace of one demo run, its own: in ``/`` (where ``tinycl launch`` puts a graph) the demo's MNIST replay
    fed any tinycl graph running on the machine and domain (a robot's camera graph would learn digits), and heard its
    predictions: two ``make demo`` at once counted 8,176 predictions of 8,100, 0 identical to the in-process run."""
    return f"/tinycl_demo_{os.getpid()}"


def run_demo(config: str | None = None, overrides: list[str] | None = None, out: str = "results/demo.json",
             compare: bool = True, console: Console | None = None, graph_name: str = "tinyndc",
             wrap: dict[str, list[str]] | None = None, monitor_dds_config: str | None = None,
             state_dir: str | None = None) -> dict:
    """Run the graph and score it (see the module docstring).

    ``state_dir``: the nodes' learned state is kept there (a second run resumes it); by default a
    fresh folder, removed after the run.
    ``wrap`` (node → command prefix) places nodes on other hosts (``launcher.start_graph``);
    ``monitor_dds_config`` is the monitor's DDS configuration if not the nodes' one.
    """
    console = console or Console()
    cfg = config_path(graph_name, config)
    ov = parse_overrides(overrides or [])
    namespace = demo_namespace()
    settings = node_settings(graph_commands(graph_name, str(cfg), namespace, ov))     # a bad value: nothing starts
    sensor = settings["sensor"]
    if sensor.source != "mnist":       # it counted MNIST's 10 classes, waited for samples that never came, then failed
        raise TinyclError(f"tinycl demo replays MNIST and scores the graph against the in-process run of the same "
                          f"stream; a {sensor.source} source has none: tinycl launch {graph_name} -p "
                          f"sensor.source:={sensor.source} runs it, and its metrics node scores a labelled one")
    k, n_stream, seed = sensor.labels_per_class, sensor.stream_length, sensor.seed
    expected = 10 * k + n_stream
    # the graph's readers of ground_truth (its parameter file counts them) and this monitor
    ov.setdefault("sensor", {})["wait_for_truth_subscribers"] = str(sensor.wait_for_truth_subscribers + 1)
    # a demo starts from nothing learned: a fresh state folder (a restarted graph would resume)
    keep_state = state_dir is not None
    folder = Path(state_dir) if state_dir is not None else Path(tempfile.mkdtemp(prefix="tinycl-demo-state-"))
    for node, values in settings.items():            # every node that keeps state (exporter included)
        if "state_dir" in type(values).model_fields:
            ov.setdefault(node, {})["state_dir"] = str(folder)
    export_dir = Path(settings["exporter"].out_dir or "results/export")
    ov.setdefault("exporter", {})["out_dir"] = str(export_dir)
    bus = create_bus("monitor", namespace, backend="dds",
                     dds_config=monitor_dds_config or sensor.dds_config)
    monitor = Monitor(bus)
    graph = start_graph(graph_name, str(cfg), namespace, ov, wrap=wrap)
    t0 = time.monotonic()
    try:
        with Progress(TextColumn("[bold]TinyNDC graph"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task("samples", total=expected, rate="")
            last_n, last_change = 0, time.monotonic()
            while monitor.received < expected:
                bus.spin_once(0.1)
                if monitor.received != last_n:
                    last_n, last_change = monitor.received, time.monotonic()
                    rate = monitor.received / max(1e-9, (monitor.last_ns - monitor.first_ns) / 1e9) if monitor.received > 1 else 0
                    bar.update(task, completed=monitor.received, rate=f"{rate:,.0f} samples/s")
                # the replay and the metrics node end by themselves, with 0; any other end is a failure
                dead = [n for n, p in graph.procs.items()
                        if p.poll() is not None and (p.returncode != 0 or n not in ("sensor", FINISHER))]
                if dead:
                    raise TinyclError(f"demo: node(s) {', '.join(dead)} exited before the stream ended")
                if time.monotonic() - last_change > STALL_S:
                    raise TinyclError(f"demo: no prediction for {STALL_S:.0f} s ({monitor.received}/{expected})")
    finally:
        codes = graph.stop()
        bus.spin_once(0.5)
        bus.shutdown()
        if not keep_state:
            shutil.rmtree(folder, ignore_errors=True)
    wall = time.monotonic() - t0
    y, p = monitor.stream()
    scores = monitor.scores(SCORE_LAST)
    lost = int(np.sum(p == -2))
    span = (monitor.last_ns - monitor.first_ns) / 1e9 if monitor.received > 1 else float("nan")
    result = {"graph": {**scores, "samples": int(monitor.received), "lost": lost,
                        "throughput_samples_per_s": monitor.received / span if span else None,
                        "wall_s": wall, "exit_codes": codes},
              "seed": seed, "labels_per_class": k, "stream_length": n_stream, "preset": settings["labeler"].preset,
              "graph_name": graph_name, "scored_last": min(SCORE_LAST, int(y.size))}
    if compare:
        result["in_process"] = _in_process(result, settings["extractor"].model, sensor.data_dir, p)
    # what the exporter wrote: a latent head has no C header (its C form: export/c_latent.py)
    result["export"] = {kind: str(path) if path.is_file() else None
                        for kind, path in (("onnx", export_dir / "head.onnx"), ("c_header", export_dir / "head.h"))}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=1))
    _report(console, result)
    return result


def _in_process(result: dict, model: str, data_dir: str | None, graph_preds: np.ndarray) -> dict:
    """The same preset, seed and stream through the in-process loop, prediction by prediction."""
    from . import presets
    from .experiments import tinyndc as exp

    extractor = exp.load_extractor(model)
    feats = exp.extract_features(extractor, data_dir)
    factory = {"tinycl": presets.tinycl_best, "tinyndc": presets.tinyndc_paper}[result["preset"]]
    protocol = exp.Protocol(labels_per_class=result["labels_per_class"], stream_length=result["stream_length"])
    r = exp.run_one(factory, False, feats, result["seed"], protocol, result["labels_per_class"], keep_predictions=True)
    ref = np.asarray(r["predictions"], np.int64)
    same = int(np.sum(ref == graph_preds)) if ref.shape == graph_preds.shape else 0
    return {k: r[k] for k in ("accuracy", "precision", "recall", "f1")} | {
        "identical_predictions": same, "of": int(ref.size)}


def _report(console: Console, r: dict) -> None:
    t = Table(title=f"{r['graph_name']} graph on MNIST — preset {r['preset']}, seed {r['seed']}, "
                    f"{r['labels_per_class']} labels/class, scores on the last {r['scored_last']} of "
                    f"{r['stream_length']} (%)")
    for col in ("run", "accuracy", "precision", "recall", "F1", "samples", "lost", "samples/s"):
        t.add_column(col, justify="left" if col == "run" else "right")
    g = r["graph"]
    t.add_row("graph: 5 processes over DDS", f"{g['accuracy']:.2f}", f"{g['precision']:.2f}", f"{g['recall']:.2f}",
              f"{g['f1']:.2f}", str(g["samples"]), str(g["lost"]), f"{g['throughput_samples_per_s'] or 0:,.0f}")
    if "in_process" in r:
        i = r["in_process"]
        t.add_row("in process (same seed)", f"{i['accuracy']:.2f}", f"{i['precision']:.2f}", f"{i['recall']:.2f}",
                  f"{i['f1']:.2f}", "", "", "")
        t.caption = f"identical predictions: {i['identical_predictions']} of {i['of']}"
    t.add_row("paper (TinyNDC)", "92.3", "93.0", "92.0", "92.0", "", "", "")
    console.print(t)
    console.print("exported head: " + (" and ".join(path for path in r["export"].values() if path) or "none"))
