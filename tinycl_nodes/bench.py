"""``make bench``: per-sample time of each stage, in process, as in the TinyNDC paper's table 2.

Stages per sample: the frozen model's forward pass (fp32 and int8 ONNX, one sample at a time,
one thread), clustering (pseudo-label), active model (prediction), active model update and
clustering update. The figure of merit is the ratio of everything after the frozen forward pass
to the forward pass itself (paper, OpenMV H7 Plus: 6.1 ms over 16.4 ms = 37%; target ≤ 25%):
ratios measured in one run are what compares across machines.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

from .datasets import load_mnist
from . import presets
from .extractor import FrozenExtractor, model_path

PAPER_MS = {"frozen model": 16.39, "clustering": 2.18, "active model": 1.38,
            "clustering update": 0.22, "active model update": 2.34}


def _time_calls(fn, items, repeats: int = 1) -> float:
    """Median over ``repeats`` passes of the mean µs per call of ``fn`` over ``items``."""
    per_pass = []
    for _ in range(repeats):
        t0 = time.perf_counter_ns()
        for it in items:
            fn(it)
        per_pass.append((time.perf_counter_ns() - t0) / 1e3 / len(items))
    return float(np.median(per_pass))


def bench_stages(system, feats: np.ndarray, init_X: np.ndarray, init_y: np.ndarray) -> dict[str, float]:
    """µs per sample of each learning stage of a TinyNDC system, stage by stage in stream order."""
    system.init_from_labelled(init_X, init_y)
    clusterer, head = system.clusterer, system.head
    t = {"clustering": 0, "active model": 0, "active model update": 0, "clustering update": 0}
    clock = time.perf_counter_ns
    for x in feats:
        t0 = clock()
        pseudo, conf = clusterer.pseudo_label_valid(x)
        t1 = clock()
        pred = head.predict_valid(x)
        t2 = clock()
        if conf >= system.min_confidence:
            head.learn_valid(x, pseudo)
        t3 = clock()
        target = pred if system.cluster_update == "head" else (pseudo if conf >= system.min_confidence else None)
        if target is not None:
            clusterer.update_valid(x, target)
        t4 = clock()
        t["clustering"] += t1 - t0
        t["active model"] += t2 - t1
        t["active model update"] += t3 - t2
        t["clustering update"] += t4 - t3
    return {k: v / 1e3 / len(feats) for k, v in t.items()}


def run_bench(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 120)
    X, _ = load_mnist("test", args.data)
    Xtr, ytr = load_mnist("train", args.data)
    rng = np.random.default_rng(0)
    images = X[rng.permutation(len(X))[: args.samples]]
    init_idx = np.concatenate([rng.choice(np.flatnonzero(ytr == c), 10, replace=False) for c in range(10)])
    result: dict = {"machine": {"cpu": platform.processor() or platform.machine(), "python": platform.python_version()},
                    "samples": len(images), "paper_ms": PAPER_MS, "extract_us": {}, "systems": {}}
    extractors = {}
    for name, fast in (("mnist_0to5_fp32", False), ("mnist_0to5_int8", False), ("mnist_0to5_int8", True)):
        ex = FrozenExtractor(model_path(name), threads=1, int8_fast=fast)
        key = name + ("_fused_kernels" if fast else "")
        extractors[key] = ex
        ex.extract_one(images[0])  # warm-up
        result["extract_us"][key] = _time_calls(ex.extract_one, images, repeats=3)
    fp32 = extractors["mnist_0to5_fp32"]
    feats = fp32.extract(images)
    init_X, init_y = fp32.extract(Xtr[init_idx]), ytr[init_idx].astype(np.int64)
    frozen_us = result["extract_us"]["mnist_0to5_fp32"]
    for sys_name, factory in (("tinyndc", presets.tinyndc_paper), ("tinycl", presets.tinycl_best)):
        stages = bench_stages(factory(feats.shape[1], fp32.hash), feats, init_X, init_y)
        learning = sum(stages.values())
        result["systems"][sys_name] = {"stages_us": stages, "learning_us": learning,
                                       "ratio_learning_to_frozen": learning / frozen_us,
                                       "ratio_learning_to_frozen_int8_fused":
                                           learning / result["extract_us"]["mnist_0to5_int8_fused_kernels"]}
        # the whole step() as the nodes call it, for the same samples (validation included)
        system = factory(feats.shape[1], fp32.hash)
        system.init_from_labelled(init_X, init_y)
        result["systems"][sys_name]["step_us"] = _time_calls(system.step, feats)
        result["systems"][sys_name]["ratio_step_to_frozen"] = result["systems"][sys_name]["step_us"] / frozen_us

    table = Table(title=f"Per-sample time by stage, in process ({len(images)} MNIST samples, 1 thread)")
    table.add_column("stage")
    table.add_column("paper, OpenMV H7 (ms)", justify="right")
    table.add_column("tinyndc here (µs)", justify="right")
    table.add_column("tinycl here (µs)", justify="right")
    table.add_row("frozen model (fp32 ONNX)", f"{PAPER_MS['frozen model']:.2f}", f"{frozen_us:.1f}", f"{frozen_us:.1f}")
    for key, label in (("mnist_0to5_int8", "frozen model (int8, as defined)"),
                       ("mnist_0to5_int8_fused_kernels", "frozen model (int8, fused kernels)")):
        table.add_row(label, "", f"{result['extract_us'][key]:.1f}", f"{result['extract_us'][key]:.1f}")
    for stage in ("clustering", "active model", "clustering update", "active model update"):
        table.add_row(stage, f"{PAPER_MS[stage]:.2f}", f"{result['systems']['tinyndc']['stages_us'][stage]:.1f}",
                      f"{result['systems']['tinycl']['stages_us'][stage]:.1f}")
    paper_ratio = sum(v for k, v in PAPER_MS.items() if k != "frozen model") / PAPER_MS["frozen model"]
    table.add_row("learning ÷ frozen (stages)", f"{100 * paper_ratio:.0f}%",
                  f"{100 * result['systems']['tinyndc']['ratio_learning_to_frozen']:.0f}%",
                  f"{100 * result['systems']['tinycl']['ratio_learning_to_frozen']:.0f}%")
    table.add_row("learning ÷ frozen int8 fused (stages)", "",
                  f"{100 * result['systems']['tinyndc']['ratio_learning_to_frozen_int8_fused']:.0f}%",
                  f"{100 * result['systems']['tinycl']['ratio_learning_to_frozen_int8_fused']:.0f}%")
    table.add_row("learning ÷ frozen (whole step())", "",
                  f"{100 * result['systems']['tinyndc']['ratio_step_to_frozen']:.0f}%",
                  f"{100 * result['systems']['tinycl']['ratio_step_to_frozen']:.0f}%")
    console.print(table)
    if getattr(args, "graph", True):
        from .graph_bench import run_graph_bench

        g = run_graph_bench(str(Path(args.out).with_name("graph_bench.json")), console=console)
        result["graph"] = g
        gt = Table(title="TinyNDC graph: five processes over DDS (loopback, reliable QoS)")
        for col in ("measure", "value", "target"):
            gt.add_column(col, justify="right" if col != "measure" else "left")
        t, lat = g["throughput"], g["latency_at_rate"]
        gt.add_row("throughput, fed as fast as it takes (samples/s)", f"{t['samples_per_s']:,.0f}", "≥ 1,000")
        gt.add_row("samples lost", f"{t['lost']} of {t['samples']}", "0")
        gt.add_row("in-process pipeline, same work (samples/s)", f"{t['in_process_samples_per_s']:,.0f}", "")
        gt.add_row("graph ÷ in-process", f"{100 * t['ratio_graph_to_in_process']:.0f}%", "")
        gt.add_row(f"latency sensor → learner update at {lat['rate_hz']:g}/s: p50 (ms)", f"{lat.get('p50_ms', float('nan')):.2f}", "")
        gt.add_row("  p99 (ms)", f"{lat.get('p99_ms', float('nan')):.2f}", "≤ 10")
        gt.add_row("  max (ms)", f"{lat.get('max_ms', float('nan')):.2f}", "")
        console.print(gt)
    if getattr(args, "camera", True):
        from .camera_bench import run as camera_bench

        result["camera"] = camera_bench(args.data, console=console)
        Path(args.out).with_name("camera_bench.json").write_text(json.dumps(result["camera"], indent=1))
    if getattr(args, "fleet", True):
        from .fleet.bench import run as fleet_bench

        result["fleet"] = fleet_bench(out=str(Path(args.out).with_name("fleet_bench.json")))
        console.print(f"fleet: {json.dumps(result['fleet'])[:600]}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    console.print(f"wrote {out}")
    return 0
