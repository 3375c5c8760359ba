"""TyBox (memory-budgeted buffer, DDM) against TinyOL (latest sample only) on the thesis's three scenarios.

The TyBox thesis compares its incremental model with TinyOL where the data changes under the
device. Both heads here are the presets' (``tybox_64k``: a 64 KiB FIFO buffer of fp32 features
and one SGD pass over it per sample, DDM drift handling; ``tinyol``: one SGD step on the latest
sample), with the learning rates the selection chose (``presets.HEAD_LR``), on the features of a
frozen model; every label of the stream is used (the supervised setting the thesis uses):

1. **incremental** learning of new classes: Fashion-MNIST, frozen model trained on classes 0–5 of
   the training split's backbone part; the stream (the ``stream`` part) shows classes 0–5, then
   6–9; scored on the ``holdout`` part (never the test split): overall, old and new classes;
2. **drift**: (a) HAR — heads learned on base subjects s01–s12 (training executions) meet each
   new subject s13–s16 (its training executions); scored on that subject's held-out executions
   before and after, and on the base subjects' held-out executions after (forgetting);
   (b) CWRU — the normal class first, then each fault class arrives in turn; scored on the test
   windows of every class at the end;
3. **transfer** to a new task: the same Fashion-MNIST frozen model, digits (MNIST training
   split: the ``stream`` part streams, the ``holdout`` part scores).

Prequential accuracy (predict, then learn, over the stream) is reported beside the final one.
"""

from __future__ import annotations

import argparse
import copy
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from .. import presets
from ..arg_types import count, output_file
from ..core.errors import InputError
from ..core.head import Head
from ..datasets.cwru import load_cwru
from ..datasets.har import load_har
from ..extractor import FrozenExtractor, model_path
from .protocol import forbid_test_split, load_images, train_parts
from .tinyndc import write_json
from .tinyrce import user_split

HEADS = ("tybox_64k", "tinyol")


def _acc(head: Head, X: np.ndarray, y: np.ndarray) -> float:
    pred = np.array([head.predict_one(x) for x in X])
    return round(100.0 * float(np.mean(pred == y)), 2) if len(y) else float("nan")


def _stream(head: Head, X: np.ndarray, y: np.ndarray) -> float:
    """Learn ``X, y`` in order; return the prequential accuracy (each sample predicted before it is learned)."""
    hit = 0
    for x, c in zip(X, y):
        if head.classes:
            hit += int(head.predict_one(x) == int(c))
        head.learn_one(x, int(c))
    return round(100.0 * hit / max(len(y), 1), 2)


def _state_bytes(head: Head) -> int:
    return int(sum(np.asarray(a).nbytes for a in head.state_dict()["arrays"].values()))


def _make(name: str, n: int, h: str) -> Head:
    return presets.HEADS[name](n, h)


def _image_parts(dataset: str, data: str | None, per_class_stream: int, per_class_test: int, seed: int):
    X, y = load_images(dataset, "train", data)
    parts = train_parts(y)
    rng = np.random.default_rng(seed)
    pick = lambda idx, k: np.concatenate([rng.permutation(idx[y[idx] == c])[:k] for c in np.unique(y[idx])])  # noqa: E731
    return X, y, pick(parts["stream"], per_class_stream), pick(parts["holdout"], per_class_test)


def _each_head(extractor: FrozenExtractor, Fs: np.ndarray, ys: np.ndarray, Ft: np.ndarray, yt: np.ndarray,
               groups: dict[str, np.ndarray] | None = None) -> dict:
    """Every head learns the stream ``Fs, ys`` in order; its prequential and held-out accuracy
    (overall and per named group of held-out samples) and its learned state size."""
    out = {}
    for name in HEADS:
        head = _make(name, Fs.shape[1], extractor.hash)
        preq = _stream(head, Fs, ys)
        out[name] = {"accuracy": _acc(head, Ft, yt), "prequential": preq, "state_bytes": _state_bytes(head),
                     **{g: _acc(head, Ft[m], yt[m]) for g, m in (groups or {}).items()}}
    return {"stream": int(len(ys)), "test": int(len(yt)), "heads": out}


def incremental(extractor: FrozenExtractor, data: str | None, per_class: int, per_test: int, seed: int) -> dict:
    """Fashion-MNIST: classes 0–5 then 6–9 in the stream; scored on the holdout part."""
    X, y, s, t = _image_parts("fashion_mnist", data, per_class, per_test, seed)
    rng = np.random.default_rng(seed)
    old = s[y[s] < 6]
    new = s[y[s] >= 6]
    order = np.concatenate([rng.permutation(old), rng.permutation(new)])
    Fs, Ft = extractor.extract(X[order]), extractor.extract(X[t])
    ys, yt = y[order].astype(np.int64), y[t].astype(np.int64)
    return _each_head(extractor, Fs, ys, Ft, yt, {"old_classes": yt < 6, "new_classes": yt >= 6})


def transfer(extractor: FrozenExtractor, data: str | None, per_class: int, per_test: int, seed: int) -> dict:
    """The Fashion-MNIST model on digits: a new task, learned from scratch by each head."""
    X, y, s, t = _image_parts("mnist", data, per_class, per_test, seed)
    s = np.random.default_rng(seed).permutation(s)
    Fs, Ft = extractor.extract(X[s]), extractor.extract(X[t])
    ys, yt = y[s].astype(np.int64), y[t].astype(np.int64)
    return _each_head(extractor, Fs, ys, Ft, yt)


def drift_har(data: str | None, seed: int, base: list[int], new: list[int], step: int = 10) -> dict:
    """HAR: heads learned on the base subjects meet each new subject (from the same base state)."""
    extractor = FrozenExtractor(model_path("har_elm"), threads=1)
    h = load_har(data, device="sp", subjects=base + new, step=step)
    feats = extractor.extract(h.X)
    split = {s: user_split(h, s, 0.6) for s in base + new}
    tr = np.concatenate([split[s][0] for s in base])
    tr = tr[np.random.default_rng(seed).permutation(len(tr))]
    te_base = np.concatenate([split[s][1] for s in base])
    out = {}
    for name in HEADS:
        head0 = _make(name, feats.shape[1], extractor.hash)
        _stream(head0, feats[tr], h.y[tr])
        base_acc = _acc(head0, feats[te_base], h.y[te_base])
        users = {}
        for s in new:
            a, b = split[s]
            head = copy.deepcopy(head0)
            before = _acc(head, feats[b], h.y[b])
            preq = _stream(head, feats[a], h.y[a])
            users[f"s{s:02d}"] = {"before": before, "after": _acc(head, feats[b], h.y[b]), "prequential": preq,
                                  "base_after": _acc(head, feats[te_base], h.y[te_base])}
        mean = {k: round(float(np.mean([u[k] for u in users.values()])), 2) for k in next(iter(users.values()))}
        out[name] = {"base_accuracy": base_acc, "users": users, "mean": mean, "state_bytes": _state_bytes(head0)}
    return {"base_subjects": base, "new_subjects": new, "heads": out}


def drift_cwru(data: str | None, seed: int) -> dict:
    """CWRU: the normal class first, then each fault class in turn; scored on every test window at the end."""
    extractor = FrozenExtractor(model_path("cwru_elm"), threads=1)
    tr, te = load_cwru(data, split="train"), load_cwru(data, split="test")
    Ftr, Fte = extractor.extract(tr.X), extractor.extract(te.X)
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(np.flatnonzero(tr.y == c)) for c in np.unique(tr.y)])  # class 0 = normal
    classes = [int(c) for c in np.unique(te.y)]
    r = _each_head(extractor, Ftr[order], tr.y[order], Fte, te.y, {f"class_{c}": te.y == c for c in classes})
    for h in r["heads"].values():
        h["per_class"] = {c: h.pop(f"class_{c}") for c in classes}
        h["normal"], h["first_fault"] = h["per_class"][0], h["per_class"][1]
    return r


def run(args: argparse.Namespace, progress: Callable[[str], None] = print) -> dict:
    """All three scenarios; ``args``: data, seed, per_class, per_test, model."""
    fashion = FrozenExtractor(model_path(args.model), threads=2)
    result: dict = {"heads": list(HEADS), "model": args.model, "seed": args.seed,
                    "head_params": {"tinyol_lr": presets.HEAD_LR["tinyol"], "tybox_lr": presets.HEAD_LR["tybox"]}}
    with forbid_test_split():   # image scenarios: training split only (stream / holdout parts)
        result["incremental"] = incremental(fashion, args.data, args.per_class, args.per_test, args.seed)
        progress(f"incremental: {result['incremental']['heads']}")
        result["transfer"] = transfer(fashion, args.data, args.per_class, args.per_test, args.seed)
        progress(f"transfer: {result['transfer']['heads']}")
    result["drift_har"] = drift_har(args.data, args.seed, list(range(1, 13)), [13, 14, 15, 16])
    progress(f"drift HAR: { {k: v['mean'] for k, v in result['drift_har']['heads'].items()} }")
    result["drift_cwru"] = drift_cwru(args.data, args.seed)
    progress(f"drift CWRU: { {k: v['accuracy'] for k, v in result['drift_cwru']['heads'].items()} }")
    return result


def markdown(result: dict) -> str:
    """The comparison as the table docs/results.md quotes."""
    rows = ["| scenario | measure | TyBox (64 KiB buffer, DDM) | TinyOL (latest sample) |", "|---|---|---|---|"]
    inc, tr, dh, dc = (result[k]["heads"] for k in ("incremental", "transfer", "drift_har", "drift_cwru"))
    lines = [("incremental (Fashion 0–5 → 6–9)", "holdout accuracy / new classes / old classes",
              lambda h: f"{inc[h]['accuracy']:.2f} / {inc[h]['new_classes']:.2f} / {inc[h]['old_classes']:.2f}"),
             ("incremental", "prequential", lambda h: f"{inc[h]['prequential']:.2f}"),
             ("drift: HAR s01–s12 → new subject", "new subject before → after (mean s13–s16)",
              lambda h: f"{dh[h]['mean']['before']:.2f} → {dh[h]['mean']['after']:.2f}"),
             ("drift: HAR", "base subjects before → after (forgetting)",
              lambda h: f"{dh[h]['base_accuracy']:.2f} → {dh[h]['mean']['base_after']:.2f}"),
             ("drift: CWRU normal, then faults one by one", "test accuracy / normal / first fault",
              lambda h: f"{dc[h]['accuracy']:.2f} / {dc[h]['normal']:.2f} / {dc[h]['first_fault']:.2f}"),
             ("drift: CWRU", "prequential", lambda h: f"{dc[h]['prequential']:.2f}"),
             ("transfer (Fashion model → digits)", "holdout accuracy / prequential",
              lambda h: f"{tr[h]['accuracy']:.2f} / {tr[h]['prequential']:.2f}"),
             ("all", "learned state bytes (Fashion features)", lambda h: f"{inc[h]['state_bytes']:,}")]
    for scen, what, f in lines:
        rows.append(f"| {scen} | {what} | {f('tybox_64k')} | {f('tinyol')} |")
    return "\n".join(rows)


def add_arguments(ap: argparse.ArgumentParser) -> None:
    ap.add_argument("--model", default="fashion_mnist_0to5_trainsplit_fp32",
                    help="frozen image model (trained on the Fashion-MNIST training split's backbone part)")
    ap.add_argument("--data", default=None)
    ap.add_argument("--seed", type=count(0), default=0)
    ap.add_argument("--per-class", type=count(1), default=300, help="image scenarios: stream samples per class")
    ap.add_argument("--per-test", type=count(1), default=200, help="image scenarios: scored samples per class")
    ap.add_argument("--out", type=output_file, default="results/scenarios.json")


def main(args: argparse.Namespace) -> int:
    if args.per_class < 1 or args.per_test < 1:
        raise InputError(f"--per-class and --per-test must be positive, got {args.per_class} and {args.per_test}")
    result = run(args, progress=lambda m: print(m, file=sys.stderr))
    write_json(result, Path(args.out))
    print(markdown(result))
    return 0
