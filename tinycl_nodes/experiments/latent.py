"""Latent replay at an intermediate layer vs final-feature replay and SLDA, on one protocol.

The frozen model is cut at ``--cut`` (``export/latent_onnx.split_model``): the part below runs
as the extractor of the latent head (:class:`~..core.latent.LatentUpperHead`), whose upper layers
(the model's own, from the cut up) and classifier train by backprop on new samples mixed with
replayed activations. Every method sees the same draws (labels, stream, held-out set) as the
TinyNDC experiment for the same seed and split:

* true labels: SLDA and final-feature replay (64-d, the shipped heads) against latent replay
  with an fp32, int8 per-tensor and int8 per-channel memory;
* unsupervised: tinycl (tied-Gaussian clusterer + SLDA on the final features) alone, and tinycl
  as the *labeler* of a latent-replay head (the head learns tinycl's pseudo-labels; scored on
  the head's predictions).

Scores: accuracy on the last 1,000 stream predictions, on the new classes there, forgetting of
the old classes (held-out, checkpoints every 1,000 samples), memory, learning MACs per stream
sample (formulas in :func:`learning_macs`). ``--select`` runs the latent grid on the
training-split protocol instead (lr × upper-layer rate × replays per batch), test split refused.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .. import presets
from ..arg_types import count, names as names_of, output_file
from ..core.errors import DivergedError
from ..core.head import Head
from ..core.latent import LatentUpperHead
from ..core.metrics import accuracy_on, classification_scores, forgetting
from ..core.replay import LatentReplayHead
from ..core.slda import StreamingLDA
from ..extractor import FrozenExtractor
from ..export.latent_onnx import Split, split_model, upper_to_onnx
from ..storage import write_atomic
from . import tinyndc as exp
from .protocol import NEW_CLASSES, OLD_CLASSES, forbid_test_split

HeadMaker = Callable[[int, str], Head]


def latent_maker(split: Split, **over: Any) -> HeadMaker:
    """A factory of latent heads on ``split`` with the presets' constants (``over`` replaces some)."""
    params = {k: v for k, v in {**presets.LATENT, **over}.items() if k != "cut"}
    return lambda n, h: LatentUpperHead(split.latent_shape, _fresh(split), extractor_hash=h, **params)


def _fresh(split: Split) -> list:
    """A new copy of the upper layers (each head trains its own)."""
    from ..core.layers import layer_from_spec

    return [layer_from_spec(layer.spec(), layer.arrays()) for layer in split.upper]


def learning_macs(head: Head, n_classes: int = 10) -> float:
    """Learning MACs per stream sample, from the layer shapes and the training schedule.

    Latent head: ``epochs·(batch + replays)/batch`` patterns per sample, each forward + weight
    gradients + input gradients above the first trainable layer. Final-feature replay: the same
    for one C×F layer over the whole memory (its preset). SLDA: ``F²`` for the rank-1 covariance
    update + ``F`` for the mean, and every ``refresh_every`` samples a solve (``F³/3 + C·F²``).
    """
    if isinstance(head, LatentUpperHead):
        return float(head.learning_macs_per_sample(n_classes))
    F = head.n_features
    if isinstance(head, LatentReplayHead):
        return head.epochs * (head.batch_size + head.memory_size) * 2 * n_classes * F / head.batch_size
    if isinstance(head, StreamingLDA):
        return F * F + F + (F ** 3 / 3 + n_classes * F * F) / head.refresh_every
    return float("nan")


def memory_bytes(head: Head) -> dict[str, int]:
    """Learned state (all arrays of the state), and the replay memory within it."""
    arrays = head.state_dict()["arrays"]
    out = {"state_bytes": int(sum(np.asarray(a).nbytes for a in arrays.values()))}
    if hasattr(head, "replay_nbytes"):
        out["replay_bytes"] = int(head.replay_nbytes)
        out["replay_label_bytes"] = int(head.label_nbytes)
        out["replay_bytes_reserved_total"] = out["replay_bytes"] + out["replay_label_bytes"]
    return out


def _predict(head: Head, X: np.ndarray) -> np.ndarray:
    if hasattr(head, "predict_batch"):
        return head.predict_batch(X)
    return np.array([head.predict_valid(x) for x in X], np.int64)


def run_stream(make_head: HeadMaker, on_latent: bool, unsupervised: bool, final: exp.Features,
               latent: exp.Features, seed: int, protocol: exp.Protocol, labels: int,
               keep: list[Head] | None = None, min_confidence: float | None = None) -> dict:
    """One head, one seed: learn the stream (true labels, or tinycl's pseudo-labels) and score it.

    Unsupervised, a latent head learns only the pseudo-labels whose clusterer confidence is at
    least ``min_confidence`` (default ``presets.pseudo_label_gate``, as the learner node's ``min_confidence``:
    ``LATENT_MIN_CONFIDENCE``); a head on the final features learns them all, as tinycl's own head does.
    The trained head is appended to ``keep`` when given (to export it)."""
    if min_confidence is None:
        min_confidence = presets.pseudo_label_gate(on_latent)
    init, stream, held = exp.split(seed, final, protocol, labels)
    feats = latent if on_latent else final
    head = make_head(feats.n_features, feats.extractor_hash)
    refused = 0

    def learn(x: np.ndarray, label: int, checked: bool = True) -> None:
        nonlocal refused
        try:
            (head.learn_valid if checked else head.learn_one)(x, label)
        except DivergedError:   # a diverged batch (latent head): dropped, as the learner node drops it
            refused += 1

    y0 = final.train_y[init]
    for x, y in zip(feats.train_rows(init), y0):
        learn(x, int(y), checked=False)
    labeler = None
    if unsupervised:
        labeler = presets.tinycl_best(final.n_features, final.extractor_hash)
        labeler.init_from_labelled(final.train_rows(init), y0, final.prior)
    old = held[np.isin(final.test_y[held], OLD_CLASSES)]
    old_X, old_y = feats.test[old], final.test_y[old]
    X, Xf, y = feats.test[stream], final.test[stream], final.test_y[stream]
    preds = np.empty(y.size, np.int64)
    old_acc, t0 = [], time.perf_counter()
    for start in range(0, y.size, exp.CHECKPOINT):
        for i in range(start, min(start + exp.CHECKPOINT, y.size)):
            p = head.predict_valid(X[i])
            preds[i] = -1 if p is None else p
            target = int(y[i])
            if labeler is not None:
                step = labeler.step(Xf[i])
                if step.confidence < min_confidence:
                    continue
                target = step.pseudo_label
            learn(X[i], target)
        old_acc.append(accuracy_on(old_y, _predict(head, old_X), OLD_CLASSES))
    seconds = time.perf_counter() - t0
    if keep is not None:
        keep.append(head)
    tail = slice(max(0, y.size - protocol.score_last), y.size)
    return {**classification_scores(y[tail], preds[tail]),
            "accuracy_new_classes": accuracy_on(y[tail], preds[tail], NEW_CLASSES),
            "accuracy_old_classes": accuracy_on(y[tail], preds[tail], OLD_CLASSES),
            "forgetting_old": forgetting(max(old_acc), old_acc[-1]),
            "learning_macs_per_sample": learning_macs(head), **memory_bytes(head),
            "us_per_sample": 1e6 * seconds / y.size, "refused_batches": refused}


def methods(split: Split | None) -> dict[str, tuple[HeadMaker, bool, bool]]:
    """name → (head factory, on latent features, unsupervised); the factories read ``split`` only when called, so
    ``methods(None)`` names them before any model is cut."""
    return {
        "slda_final": (presets.HEADS["slda"], False, False),
        "replay_final_fp32": (presets.HEADS["latent_replay_fp32"], False, False),
        "replay_final_int8": (presets.HEADS["latent_replay_int8"], False, False),
        "latent_fp32": (latent_maker(split, quantization="none"), True, False),
        "latent_int8_tensor": (latent_maker(split, quantization="tensor"), True, False),
        "latent_int8_channel": (latent_maker(split, quantization="channel"), True, False),
        "tinycl_slda_final": (presets.HEADS["slda"], False, True),
        "tinycl_replay_final": (presets.HEADS["latent_replay_fp32"], False, True),
        "tinycl_latent_fp32": (latent_maker(split, quantization="none"), True, True),
        "tinycl_latent_int8_channel": (latent_maker(split, quantization="channel"), True, True),
    }


# lr × upper-layer rate × replays per new batch × the pseudo-label confidence gate: the grid
# --select runs (full product; the gate only changes the unsupervised runs)
LATENT_GRID = {"lr": (0.01, 0.03, 0.1), "upper_lr_scale": (0.1, 0.3, 1.0, 3.0, 10.0), "replay": (96, 192, 288),
               "min_confidence": (0.0, 0.9, 0.99)}


def _prepare(args) -> tuple[exp.Features, exp.Features, Split, FrozenExtractor]:
    full = exp.load_extractor(args.model, args.dataset, args.split)
    split = split_model(full.path, args.cut, Path(args.out).parent / "latent_models")
    lower = FrozenExtractor(split.lower_path, threads=2)
    final = exp.extract_features(full, args.data, args.dataset, args.split)
    latent = exp.extract_features(lower, args.data, args.dataset, args.split)
    return final, latent, split, full


def _protocol(args, final: exp.Features, console) -> exp.Protocol:
    """The protocol the options ask for, fitted to the data as ``experiment tinyndc``'s (``--labels`` beyond a class's
    images was numpy's "Cannot take a larger sample than population"; a ``--stream`` beyond the pool was recorded as
    asked, and left no held-out image: forgetting was written as bare NaN, which is not JSON)."""
    classes = [str(c) for c in range(int(final.train_y.max()) + 1)]
    exp.check_labelled(final.train_y, classes, {"--labels": args.labels})
    stream, score_last, note = exp.fit_stream(final.test_y.size, args.stream, exp.Protocol().score_last, args.dataset)
    if note:
        console.print(note, style="yellow", soft_wrap=True)
    return exp.Protocol(stream_length=stream, labels_per_class=args.labels, score_last=score_last)


def run_select(final: exp.Features, latent: exp.Features, split: Split, seeds: int, protocol: exp.Protocol,
               progress: Callable[[str], None]) -> dict:
    """The latent grid on the training-split protocol (true labels and tinycl pseudo-labels)."""
    if final.split == "test":
        raise AssertionError("model selection must not score on the test split")
    rows = []
    for lr in LATENT_GRID["lr"]:
        for uls in LATENT_GRID["upper_lr_scale"]:
            for rep in LATENT_GRID["replay"]:
                maker = latent_maker(split, lr=lr, upper_lr_scale=uls, replay=rep)
                sup = [run_stream(maker, True, False, final, latent, s, protocol, protocol.labels_per_class) for s in range(seeds)]
                for gate in LATENT_GRID["min_confidence"]:
                    uns = [run_stream(maker, True, True, final, latent, s, protocol, protocol.labels_per_class,
                                      min_confidence=gate) for s in range(seeds)]
                    row = {"lr": lr, "upper_lr_scale": uls, "replay": rep, "min_confidence": gate,
                           "supervised": round(float(np.mean([r["accuracy"] for r in sup])), 3),
                           "supervised_new": round(float(np.mean([r["accuracy_new_classes"] for r in sup])), 3),
                           "unsupervised": round(float(np.mean([r["accuracy"] for r in uns])), 3),
                           "unsupervised_new": round(float(np.mean([r["accuracy_new_classes"] for r in uns])), 3)}
                    row["objective"] = round((row["supervised"] + row["unsupervised"]) / 2, 3)
                    row["refused_batches"] = sum(r["refused_batches"] for r in sup + uns)
                    rows.append(row)
                    progress(f"latent lr={lr} upper×{uls} replay={rep} gate={gate}: {row}")
    best = max(rows, key=lambda r: r["objective"])
    return {"grid": {k: list(v) for k, v in LATENT_GRID.items()}, "rows": rows,
            "chosen": {k: best[k] for k in ("lr", "upper_lr_scale", "replay", "min_confidence")},
            "presets_now": {**{k: presets.LATENT[k] for k in ("lr", "upper_lr_scale", "replay")},
                            "min_confidence": presets.LATENT_MIN_CONFIDENCE}}


def main(args) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140)
    if args.select:
        args.split = "train"
        with forbid_test_split():
            final, latent, split, full = _prepare(args)
            protocol = _protocol(args, final, console)
            result = {"select": run_select(final, latent, split, args.seeds, protocol, console.log)}
    else:
        final, latent, split, full = _prepare(args)
        protocol = _protocol(args, final, console)
        table = methods(split)
        names = list(args.methods) or list(table)
        result = {"methods": {}}
        trained: list[Head] = []
        for name in names:
            maker, on_latent, unsup = table[name]
            runs = [run_stream(maker, on_latent, unsup, final, latent, s, protocol, args.labels,
                               keep=trained if (on_latent and s == 0 and not trained) else None)
                    for s in range(args.seeds)]
            result["methods"][name] = exp.summarize(runs)
            console.log(f"{name}: {result['methods'][name]['accuracy']['mean']:.2f}% "
                        f"(new {result['methods'][name]['accuracy_new_classes']['mean']:.2f})")
        if trained:   # the first latent head trained (seed 0): its upper layers + classifier as ONNX
            onnx_path = Path(args.out).parent / "latent_models" / f"{full.path.stem}.upper_head.onnx"
            onnx_path.write_bytes(upper_to_onnx(trained[0]).SerializeToString())
            result["exported_upper_onnx"] = str(onnx_path)
        m = result["methods"]
        if {"latent_fp32", "latent_int8_channel", "latent_int8_tensor"} <= m.keys():
            fp, q = m["latent_fp32"], m["latent_int8_channel"]
            result["qlr"] = {"replay_bytes_fp32": fp["replay_bytes"]["mean"],
                             "replay_bytes_int8_channel": q["replay_bytes"]["mean"],
                             "replay_bytes_int8_tensor": m["latent_int8_tensor"]["replay_bytes"]["mean"],
                             "compression_channel": fp["replay_bytes"]["mean"] / q["replay_bytes"]["mean"],
                             "compression_channel_with_labels": fp["replay_bytes_reserved_total"]["mean"]
                             / q["replay_bytes_reserved_total"]["mean"],
                             "accuracy_loss_channel": round(fp["accuracy"]["mean"] - q["accuracy"]["mean"], 3),
                             "accuracy_loss_tensor": round(fp["accuracy"]["mean"] - m["latent_int8_tensor"]["accuracy"]["mean"], 3)}
        t = Table(title=f"latent replay at {args.cut} — {args.dataset} split {args.split}, {args.seeds} seeds")
        for c in ("method", "accuracy", "new classes", "old classes", "forgetting old", "memory (B)", "learning MACs/sample"):
            t.add_column(c)
        for name, r in m.items():
            t.add_row(name, f"{r['accuracy']['mean']:.2f} ± {r['accuracy']['std']:.2f}",
                      f"{r['accuracy_new_classes']['mean']:.2f}", f"{r['accuracy_old_classes']['mean']:.2f}",
                      f"{r['forgetting_old']['mean']:.2f}", f"{int(r['state_bytes']['mean']):,}",
                      f"{r['learning_macs_per_sample']['mean']:,.0f}")
        console.print(t)
    result["protocol"] = {**protocol.__dict__, "dataset": args.dataset, "split": args.split, "model": full.path.name,
                          "cut": args.cut, "latent_shape": list(split.latent_shape),
                          "upper": [layer.op for layer in split.upper], "seeds": args.seeds,
                          "latent_preset": presets.LATENT}
    write_atomic(Path(args.out), json.dumps(result, indent=1).encode())
    console.print(f"wrote {args.out}")
    return 0


def add_arguments(p) -> None:
    p.add_argument("--dataset", default="fashion_mnist", help="mnist | fashion_mnist | an image folder")
    p.add_argument("--split", default="holdout", choices=["test", "train", "holdout"])
    p.add_argument("--model", default=None, help="frozen model (default: the protocol's)")
    p.add_argument("--cut", default=presets.LATENT["cut"], help="node name of the latent layer (the replay layer)")
    p.add_argument("--data", default=None)
    p.add_argument("--seeds", type=count(1), default=3)
    p.add_argument("--labels", type=count(1), default=10)
    p.add_argument("--stream", type=count(1), default=8000)
    p.add_argument("--methods", type=names_of(methods(None)), default=(), help="comma-separated subset (default: all)")
    p.add_argument("--select", action="store_true", help="run the latent grid on the training-split protocol")
    p.add_argument("--out", type=output_file, default="results/latent.json")
