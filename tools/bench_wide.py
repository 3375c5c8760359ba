"""Per-sample latency of the covariance learners on wide features (a user's own backbone: 64 to 1,280 features).

What a camera node feels is the worst sample, not the mean: every ``refresh_every`` samples the tied-Gaussian
clusterer and the streaming-LDA head renew their F×F precision. This times each sample of a stream of random
Gaussian clusters (10 classes, anisotropic, correlated within-class spread) through

* ``clusterer`` — ``TiedGaussianClusterer`` (its preset ``prior_scale``, 10 labelled samples a class to start):
  pseudo-label, then learn the pseudo-label;
* ``slda`` — ``StreamingLDA`` at its preset (``refresh_every=25``) after ``--warm`` samples: predict, then learn the
  true label;

and prints mean / p50 / p99 / max ms per sample at each F (no part of ``make bench``: that one times the shipped
64-feature models on MNIST). ``--drift N`` instead streams N samples and reports how far the Woodbury identity
alone, and the clusterer's precision, drift from an exact inverse (``drift``).

    PYTHONPATH=. .venv/bin/python tools/bench_wide.py [--features 64 256 512 1280] [--samples 2000]
        [--only clusterer|slda] [--warm 100] [--cpu] [--drift N] [--json out]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from tinycl_nodes.core import StreamingLDA, TiedGaussianClusterer
from tinycl_nodes.presets import TINYCL


#: wall-clock by default; ``--cpu`` counts this thread's CPU time instead (with one BLAS thread:
#: OPENBLAS_NUM_THREADS=1, it is what a sample costs, whatever else the machine runs)
CLOCK = time.perf_counter_ns


def stream(n_features: int, n: int, seed: int = 0, n_classes: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """``n`` float32 samples of ``n_classes`` Gaussian clusters whose per-feature spread spans two decades."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 1.0, (n_classes, n_features))
    spread = np.exp(rng.uniform(np.log(0.05), np.log(5.0), n_features)) / np.sqrt(n_features)
    mix = np.linalg.qr(rng.normal(size=(n_features, n_features)))[0]     # correlated features, as a backbone's are
    y = rng.integers(0, n_classes, n)
    X = means[y] + (rng.normal(size=(n, n_features)) * spread) @ mix.T
    return X.astype(np.float32), y


def time_clusterer(n_features: int, samples: int, seed: int = 0) -> np.ndarray:
    """ms per sample: ``pseudo_label_valid`` + ``update_valid`` of the pseudo-label (the labeler's learning)."""
    Xs, ys = stream(n_features, samples + 200, seed)
    init = np.concatenate([np.flatnonzero(ys[:200] == c)[:10] for c in range(10)])
    cl = TiedGaussianClusterer(n_features, prior_scale=TINYCL["prior_scale"])
    cl.init_from_labelled(Xs[init], ys[init])
    out = np.empty(samples)
    clock = CLOCK
    for j, x in enumerate(Xs[200:]):
        t0 = clock()
        c, _ = cl.pseudo_label_valid(x)
        cl.update_valid(x, c)
        out[j] = (clock() - t0) / 1e6
    return out


def time_slda(n_features: int, samples: int, seed: int = 0, warm: int = 100) -> np.ndarray:
    """ms per sample: ``predict_valid`` + ``learn_valid`` of the true label, the preset head (refresh every 25),
    after ``warm`` samples learned untimed (a head started from a model's statistics has seen thousands)."""
    Xs, ys = stream(n_features, samples + warm, seed)
    head = StreamingLDA(n_features, refresh_every=25)
    for x, y in zip(Xs[:warm], ys[:warm]):
        head.learn_valid(x, int(y))
    out = np.empty(samples)
    clock = CLOCK
    for j, (x, y) in enumerate(zip(Xs[warm:], ys[warm:])):
        t0 = clock()
        head.predict_valid(x)
        head.learn_valid(x, int(y))
        out[j] = (clock() - t0) / 1e6
    return out


def summary(ms: np.ndarray) -> dict[str, float]:
    return {"mean": float(ms.mean()), "p50": float(np.percentile(ms, 50)), "p99": float(np.percentile(ms, 99)),
            "max": float(ms.max())}


def drift(n_features: int, samples: int, seed: int = 0, every: int = 1000) -> dict[str, list[tuple[int, float]]]:
    """Largest relative error (against an exact inverse, every ``every`` samples) of

    * ``woodbury`` — the Woodbury identity alone, 25 rank-1 scatter terms at a time into ``inv(S + λI)`` (fixed
      ``λ``), never refreshed exactly: the rounding it accumulates;
    * ``clusterer`` — the ``TiedGaussianClusterer``'s precision as shipped (ridge series, fresh inverses).
    """
    from tinycl_nodes.core._lowrank import woodbury

    Xs, ys = stream(n_features, samples + 200, seed)
    init = np.concatenate([np.flatnonzero(ys[:200] == c)[:10] for c in range(10)])
    cl = TiedGaussianClusterer(n_features, prior_scale=TINYCL["prior_scale"])
    cl.init_from_labelled(Xs[init], ys[init])
    lam = cl._ridge()[1]
    S = cl.scatter.copy()
    G = np.linalg.inv(S + lam * np.eye(n_features))
    means, counts = cl.centroids.astype(np.float64), cl.counts.copy()
    U, V = [], []
    rows: dict[str, list[tuple[int, float]]] = {"woodbury": [], "clusterer": []}
    for j, (x, y) in enumerate(zip(Xs[200:], ys[200:]), 1):
        c, _ = cl.pseudo_label_valid(x)
        cl.update_valid(x, c)
        x64 = x.astype(np.float64)
        u = x64 - means[y]
        counts[y] += 1
        means[y] += u / counts[y]
        U.append(u)
        V.append(x64 - means[y])
        if len(U) == 25:
            Um, Vm = np.array(U), np.array(V)
            S += Um.T @ Vm
            G = woodbury(G, Um, Vm)
            U, V = [], []
        if j % every == 0:
            exact = np.linalg.inv(S + lam * np.eye(n_features))
            rows["woodbury"].append((j, float(np.abs(G - exact).max() / np.abs(exact).max())))
            cl._refresh()         # bring the precision to this sample, as a refresh would
            exact = np.linalg.inv(cl.covariance())
            rows["clusterer"].append((j, float(np.abs(cl.precision() - exact).max() / np.abs(exact).max())))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--features", type=int, nargs="+", default=[64, 256, 512, 1280])
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--drift", type=int, default=0, help="stream this many samples and report precision drift")
    ap.add_argument("--warm", type=int, default=100, help="samples the SLDA head learns before it is timed")
    ap.add_argument("--only", choices=("clusterer", "slda"), help="time one learner")
    ap.add_argument("--cpu", action="store_true", help="time this thread's CPU, not the wall (a shared machine)")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    if args.cpu:
        global CLOCK
        CLOCK = time.thread_time_ns
    result: dict = {}
    if args.drift:
        for F in args.features:
            result[str(F)] = drift(F, args.drift)
            for name, rows in result[str(F)].items():
                print(f"F={F} {name}: " + ", ".join(f"{n}: {e:.1e}" for n, e in rows), flush=True)
    else:
        print(f"{'F':>5} {'learner':>10} {'mean':>8} {'p50':>8} {'p99':>8} {'max':>8}  (ms per sample)")
        for F in args.features:
            for name, fn in (("clusterer", time_clusterer), ("slda", time_slda)):
                if args.only and name != args.only:
                    continue
                s = summary(fn(F, args.samples) if name == "clusterer" else fn(F, args.samples, warm=args.warm))
                result.setdefault(str(F), {})[name] = s
                print(f"{F:>5} {name:>10} {s['mean']:8.3f} {s['p50']:8.3f} {s['p99']:8.3f} {s['max']:8.3f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
