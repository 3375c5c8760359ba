"""Benchmarks of the TinyNDC graph (five processes over DDS), for `make bench`.

* throughput: the graph fed as fast as reliable QoS lets it, samples/s from the first to the
  last prediction, and samples lost (must be 0);
* latency at a camera rate (100 samples/s): sensor publish → learner update, p50 / p99, as the
  learner measures it (capture stamp to the end of the update, same clock);
* the in-process pipeline (frozen forward + TinyNDC step, one process) on the same samples, so
  the graph's throughput is quoted as a ratio measured in the same run.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from rich.console import Console

from . import presets
from .datasets import load_mnist
from .demo import run_demo
from .extractor import FrozenExtractor, model_path
from .model_prior import load_prior


def in_process_rate(n: int, data: str | None = None, preset: str = "tinycl") -> float:
    """Samples/s of extract_one + TinyNDC step in one process, one thread (the graph's work)."""
    from .experiments.tinyndc import split_indices

    Xtr, ytr = load_mnist("train", data)
    Xte, yte = load_mnist("test", data)
    init, stream, _ = split_indices(0, ytr, yte, n, 10)
    ex = FrozenExtractor(model_path("mnist_0to5_fp32"), threads=1)
    factory = {"tinycl": presets.tinycl_best, "tinyndc": presets.tinyndc_paper}[preset]
    system = factory(ex.n_features, ex.hash)
    system.init_from_labelled(ex.extract(Xtr[init]), ytr[init].astype(np.int64), load_prior(ex.path, ex.hash))
    t0 = time.perf_counter()
    for i in stream:
        system.step(ex.extract_one(Xte[i]))
    return n / (time.perf_counter() - t0)


def run_graph_bench(out: str = "results/graph_bench.json", n_throughput: int = 5000, n_latency: int = 1000,
                    rate_hz: float = 100.0, console: Console | None = None) -> dict:
    console = console or Console()
    quiet = Console(file=open(os.devnull, "w"))
    tmp = Path(tempfile.mkdtemp(prefix="tinycl-graph-bench-"))
    console.print(f"graph throughput: {n_throughput} samples, as fast as the graph takes them …")
    thr = run_demo(None, [f"sensor.stream_length:={n_throughput}", f"exporter.out_dir:={tmp}"],
                   out=str(tmp / "throughput.json"), compare=False, console=quiet)["graph"]
    console.print(f"graph latency: {n_latency} samples at {rate_hz:g} samples/s …")
    lat_file = tmp / "latency.json"
    lat_run = run_demo(None, [f"sensor.stream_length:={n_latency}", f"sensor.rate_hz:={rate_hz}",
                              f"learner.latency_log:={lat_file}", f"exporter.out_dir:={tmp}"],
                       out=str(tmp / "latency_run.json"), compare=False, console=quiet)["graph"]
    latency = json.loads(lat_file.read_text()) if lat_file.exists() else {}
    console.print("in-process pipeline on the same samples …")
    inproc = in_process_rate(n_throughput)
    result = {
        "throughput": {"samples": thr["samples"], "lost": thr["lost"],
                       "samples_per_s": thr["throughput_samples_per_s"],
                       "in_process_samples_per_s": inproc,
                       "ratio_graph_to_in_process": (thr["throughput_samples_per_s"] or 0) / inproc},
        "latency_at_rate": {"rate_hz": rate_hz, "samples": lat_run["samples"], "lost": lat_run["lost"], **latency},
        "targets": {"throughput_samples_per_s": 1000, "lost": 0, "p99_ms": 10.0},
    }
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=1))
    return result
