"""Model selection on the training-split validation protocol: every tuned constant, re-run.

``tinycl experiment select --dataset mnist`` rebuilds the validation protocol from the training
split alone (``protocol.train_parts``: the frozen model was trained on the ``backbone`` part, the
labels and the stream are the ``labels`` and ``stream`` parts), runs every grid in ``GRIDS`` in
order (coordinate ascent: a grid uses the values already chosen by the grids before it), and
writes the table of every value tried with the value chosen. The test split is never read: the
run holds :func:`~.protocol.forbid_test_split` for its whole length, and ``load_images`` refuses
the test split while it is held.

Objective of a grid: the mean accuracy on the last 1,000 stream predictions over ``seeds`` seeds
and over the grid's labels-per-class settings (1 and 10 for the unsupervised constants, where the
1-label case is the fragile one; 10 for heads learning true labels). Ties keep the earlier value.

``--dataset mnist,fashion_mnist`` selects on several validation protocols at once (the objective is
the mean over the datasets): presets.py holds one default per constant for every user, so it is
chosen where it works across data, not on one dataset's protocol.
"""

from __future__ import annotations

import itertools
import json
import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import presets
from ..arg_types import count, counts, names, output_file
from ..core.cwr import CWRStar
from ..core.errors import TinyclError
from ..core.replay import LatentReplayHead
from ..core.tinyndc import TinyNDC
from ..core.tinyol import TinyOL
from ..core.tybox import TyBoxHead
from ..presets import MethodFactory
from ..storage import write_atomic
from . import tinyndc as exp
from .protocol import forbid_test_split


@dataclass(frozen=True)
class Grid:
    """One tuned constant (or a tuple of them): where it lives, the values tried, how to build."""

    name: str
    preset: str                                   # the presets.py constant it sets
    values: tuple[Any, ...]
    build: Callable[[Any, dict[str, Any]], tuple[MethodFactory, bool]]  # (value, chosen) → (factory, supervised)
    labels: tuple[int, ...]
    why: str
    keys: tuple[str, ...] = ()                    # the presets.TINYCL keys a (tuple) value sets, in order
    shifted: bool = False                         # scored on the shifted protocols too (``shift.py``)


def _tinycl(chosen: dict[str, Any], **over: Any) -> MethodFactory:
    """tinycl with presets.TINYCL, the values the tinycl grids chose so far, then ``over``."""
    p = dict(presets.TINYCL)
    for grid in GRIDS:
        if grid.keys and grid.name in chosen:
            value = chosen[grid.name]
            p.update(zip(grid.keys, value if len(grid.keys) > 1 else (value,)))
    return presets.tinycl_with(**{**p, **over})


def _head(make) -> tuple[MethodFactory, bool]:
    return (lambda n, h: TinyNDC(None, make(n, h))), True


GRIDS: tuple[Grid, ...] = (
    Grid("tinycl.model_prior", "TINYCL['model_prior'], TINYCL['prior_z']",
         ((False, math.inf), (True, math.inf), (True, 0.0), (True, 1.0), (True, 2.0), (True, 3.0), (True, 4.0)),
         lambda v, c: (_tinycl(c, model_prior=v[0], prior_z=v[1]), False), (1, 10),
         "start from the frozen model's class statistics (model_prior.py) with the labelled samples; weighed by what "
         "they are worth on the stream's images (core/prior_worth.py: inf = always at full weight)",
         keys=("model_prior", "prior_z"), shifted=True),
    Grid("tinycl.prior_scale", "TINYCL['prior_scale']",
         (250.0, 500.0, 1000.0, 2000.0, 4000.0, 8000.0, 16000.0, 32000.0, 64000.0, 128000.0),
         lambda v, c: (_tinycl(c, prior_scale=v), False), (1, 10),
         "weight of the clusterer's isotropic prior (÷ labels per class)", keys=("prior_scale",)),
    Grid("tinycl.variant", "TINYCL['min_confidence'], TINYCL['cluster_update']",
         ((0.0, "head"), (0.0, "self"), (0.0, "agree"), (0.5, "head"), (0.9, "head"), (0.5, "agree")),
         lambda v, c: (_tinycl(c, min_confidence=v[0], cluster_update=v[1]), False), (1, 10),
         "when the head learns a pseudo-label; what moves the centroids", keys=("min_confidence", "cluster_update")),
    Grid("cwr", "CWR_PARAMS['lr'], CWR_PARAMS['batch_size']",
         tuple(itertools.product((0.005, 0.02, 0.05, 0.1), (16, 32, 64))),
         lambda v, c: _head(lambda n, h: CWRStar(n, lr=v[0], batch_size=v[1], extractor_hash=h)), (10,),
         "CWR* learning rate and consolidation batch (true labels)"),
    Grid("tinyol.lr", "HEAD_LR['tinyol']", (0.005, 0.02, 0.05, 0.1),
         lambda v, c: _head(lambda n, h: TinyOL(n, lr=v, extractor_hash=h)), (10,), "TinyOL learning rate"),
    Grid("replay.lr", "REPLAY['lr']", (0.005, 0.02, 0.05),
         lambda v, c: _head(lambda n, h: LatentReplayHead(n, extractor_hash=h, **{**presets.REPLAY, "lr": v})),
         (10,), "final-feature replay head learning rate"),
    Grid("tybox.lr", "HEAD_LR['tybox']", (0.005, 0.02, 0.05),
         lambda v, c: _head(lambda n, h: TyBoxHead(n, memory_bytes=64 * 1024, lr=v, extractor_hash=h)),
         (10,), "TyBox buffer-retrain learning rate"),
)


def current_preset(name: str) -> Any:
    """The value presets.py holds now for grid ``name`` (to flag where it differs from the choice)."""
    grid = next((g for g in GRIDS if g.name == name and g.keys), None)
    if grid is not None:
        now = tuple(presets.TINYCL[k] for k in grid.keys)
        return now if len(now) > 1 else now[0]
    table = {"cwr": (presets.CWR_PARAMS["lr"], presets.CWR_PARAMS["batch_size"]),
             "tinyol.lr": presets.HEAD_LR["tinyol"], "replay.lr": presets.REPLAY["lr"],
             "tybox.lr": presets.HEAD_LR["tybox"]}
    return table.get(name)


def run_select(feats: exp.Features | dict[str, exp.Features], seeds: int = 3, grids: tuple[Grid, ...] = GRIDS,
               protocol: exp.Protocol = exp.Protocol(),
               progress: Callable[[str], None] = lambda m: None,
               shifted: dict[str, exp.Features] | None = None) -> dict:
    """Run every grid on ``feats`` (one dataset's, or several by name; training split only), a grid marked
    ``shifted`` on the ``shifted`` protocols too (``shift.py``; by name); return the table."""
    plain = feats if isinstance(feats, dict) else {"": feats}
    if any(f.split == "test" for f in [*plain.values(), *(shifted or {}).values()]):
        raise AssertionError("model selection must not score on the test split")
    chosen: dict[str, Any] = {}
    out: dict[str, Any] = {"grids": {}, "chosen": chosen}
    for grid in grids:
        sets = {**plain, **(shifted or {})} if grid.shifted else plain
        rows = []
        t0 = time.perf_counter()
        for value in grid.values:
            factory, supervised = grid.build(value, chosen)
            per, per_set = {}, {}
            for k in grid.labels:
                accs = {name: [exp.run_one(factory, supervised, f, seed, protocol, k)["accuracy"] for seed in range(seeds)]
                        for name, f in sets.items()}
                per[str(k)] = {"mean": round(float(np.mean([np.mean(a) for a in accs.values()])), 3),
                               "std": round(float(np.mean([np.std(a) for a in accs.values()])), 3)}
                for name, a in accs.items():
                    per_set.setdefault(name, {})[str(k)] = round(float(np.mean(a)), 3)
            objective = round(float(np.mean([v["mean"] for v in per.values()])), 3)
            rows.append({"value": value, "objective": objective, "labels": per,
                         **({"datasets": per_set} if len(sets) > 1 else {})})
            progress(f"{grid.name} = {value}: {objective:.2f}")
        best = max(range(len(rows)), key=lambda i: (rows[i]["objective"], -i))
        chosen[grid.name] = rows[best]["value"]
        out["grids"][grid.name] = {"preset": grid.preset, "why": grid.why, "labels_per_class": list(grid.labels),
                                   "rows": rows, "chosen": rows[best]["value"],
                                   "presets_now": current_preset(grid.name),
                                   "seconds": round(time.perf_counter() - t0, 1)}
    return out


def main(args) -> int:
    """``tinycl experiment select``: the grid on the training-split protocol, written to --out."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if __import__("sys").stdout.isatty() else 132)
    grids = tuple(g for g in GRIDS if not args.grids or g.name in args.grids)
    if args.rows:   # a re-score of a grid's leading values with more seeds (its 1-label cells are noisy)
        if len(grids) != 1:
            raise TinyclError("--rows picks values of one grid: give it with --grids NAME")
        rows = args.rows
        if not all(i < len(grids[0].values) for i in rows):
            raise TinyclError(f"--rows: {grids[0].name} has values 0–{len(grids[0].values) - 1}, got "
                              f"{','.join(map(str, rows))}")
        grids = (replace(grids[0], values=tuple(grids[0].values[i] for i in rows)),)
    datasets = [d for d in args.dataset.split(",") if d]
    if not datasets:        # ',' scored every grid on no data (NaN) and wrote a choice
        raise TinyclError(f"--dataset: no dataset in {args.dataset!r} (e.g. mnist,fashion_mnist)")
    if args.model and len(datasets) > 1:
        raise TinyclError("--model names one frozen model: give it with one --dataset")
    with forbid_test_split():
        feats, shifted, models = {}, {}, []
        for dataset in datasets:
            extractor = exp.load_extractor(args.model, dataset, "train")
            with console.status(f"extracting {dataset} features with {extractor.path.name} …"):
                feats[dataset] = exp.extract_features(extractor, args.data, dataset, "train")
                if any(g.shifted for g in grids):
                    shifted[f"{dataset} (shifted)"] = exp.extract_features(extractor, args.data, dataset, "train",
                                                                          shift=True)
            models.append(extractor.path.name)
        protocol = exp.Protocol(stream_length=args.stream)
        result = run_select(feats, args.seeds, grids, protocol, progress=console.log, shifted=shifted)
    result["protocol"] = {**protocol.__dict__, "dataset": ",".join(datasets), "split": "train",
                          "model": ",".join(models), "seeds": args.seeds}  # the datasets given, not the Protocol's title
    for name, g in result["grids"].items():
        t = Table(title=f"{name} ({g['preset']}): {g['why']}")
        t.add_column("value")
        for k in g["labels_per_class"]:
            t.add_column(f"{k} label(s)/class")
        t.add_column("objective")
        for r in g["rows"]:
            mark = " ← chosen" if r["value"] == g["chosen"] else ""
            t.add_row(str(r["value"]) + mark, *[f"{r['labels'][str(k)]['mean']:.2f} ± {r['labels'][str(k)]['std']:.2f}"
                                               for k in g["labels_per_class"]], f"{r['objective']:.2f}")
        console.print(t)
        if g["presets_now"] is not None and _norm(g["presets_now"]) != _norm(g["chosen"]):
            console.print(f"[yellow]presets.py has {g['presets_now']}, the selection chose {g['chosen']}[/]")
    out = Path(args.out or f"results/select_{'_'.join(Path(d).name for d in datasets)}.json")
    write_atomic(out, json.dumps(result, indent=1).encode())
    console.print(f"wrote {out}")
    return 0


def _norm(v: Any) -> Any:
    return json.loads(json.dumps(v))


def add_arguments(p) -> None:
    p.add_argument("--dataset", default="mnist,fashion_mnist",
                   help="mnist | fashion_mnist | an image folder, or several, comma-separated (objective: their mean)")
    p.add_argument("--model", default=None, help="frozen extractor (default: <dataset>_0to5_trainsplit_fp32)")
    p.add_argument("--data", default=None)
    p.add_argument("--seeds", type=count(1), default=3)
    p.add_argument("--stream", type=count(1), default=8000, help="stream length (shorter for a quick look)")
    p.add_argument("--grids", type=names(g.name for g in GRIDS), default=(),
                   help="comma-separated grid names (default: all)")
    p.add_argument("--rows", type=counts(0), default=(),
                   help="with one --grids: only these of its values (indices, comma-separated)")
    p.add_argument("--out", type=output_file, default=None)
