"""The TinyNDC protocol on real MNIST (Albanese et al., ApplePies 2023), and tinycl's variant.

Protocol (paper and issue): the frozen model was trained on training digits 0–5 only; k labelled
samples per class of all ten digits, drawn from the *training* set, initialise the clusters and
the head; an 8,000-sample stream drawn from the test set is predicted then learned one sample at
a time; scores are taken on its last 1,000 predictions. The 2,000 test samples left out of the
stream measure forgetting on the old digits: the best accuracy on held-out 0–5 at any checkpoint
(every 1,000 samples) minus the accuracy at the end (Chaudhry et al.'s definition; ≥ 0 when the
head only ever gets better).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..core.errors import InputError
from ..core.federated import HeadSnapshot
from ..core.metrics import accuracy_on, classification_scores, forgetting, rolling_accuracy
from ..core.tinyndc import TinyNDC
from ..extractor import FrozenExtractor, model_path
from ..model_prior import load_prior
from ..presets import HEADS, METHODS, HeadFactory, MethodFactory
from ..storage import write_atomic
from ..training.train_frozen import model_stem
from .protocol import DATASETS, OLD_CLASSES, SPLITS, load_images, train_parts

CHECKPOINT = 1000  # stream samples between two forgetting checkpoints
#: the share of the stream pool held out when the stream asked for does not fit in it: the paper's 2,000 of MNIST's
#: 10,000 test images (forgetting is measured on them)
HELD_OUT_SHARE = 0.2

PAPER = {  # Albanese et al., table 1 and the labelled-samples sweep (accuracy, %)
    "supervised": {"accuracy": 94.3, "precision": 95.0, "recall": 94.0, "f1": 94.0},
    "clustering": {"accuracy": 90.7, "precision": 91.0, "recall": 91.0, "f1": 91.0},
    "tinyndc": {"accuracy": 92.3, "precision": 93.0, "recall": 92.0, "f1": 92.0},
    "sweep": {1: 75.3, 10: 92.3, 50: 93.2, 100: 93.5},
}


@dataclass(frozen=True)
class Protocol:
    """The numbers of the paper's protocol."""

    labels_per_class: int = 10
    stream_length: int = 8000
    score_last: int = 1000
    old_classes: tuple[int, ...] = OLD_CLASSES   # the classes the backbone was made on
    dataset: str = "MNIST"                       # the name tables and plots say


@dataclass
class Features:
    """Frozen features of the MNIST test set, and of the training images the protocol draws.

    Only a few training images per class are ever used (to initialise), so those are extracted
    on demand and cached instead of running the model over all 60,000.
    """

    train_y: np.ndarray
    test: np.ndarray
    test_y: np.ndarray
    extractor_hash: str
    train_source: Callable[[np.ndarray], np.ndarray]
    split: str = "test"
    dataset: str = "mnist"
    prior: HeadSnapshot | None = None            # the frozen model's class statistics (model_prior.py)
    _cache: dict[int, np.ndarray] = field(default_factory=dict)

    @property
    def n_features(self) -> int:
        return int(self.test.shape[1])

    def train_rows(self, idx: np.ndarray) -> np.ndarray:
        """Features of training images ``idx`` (extracted once, then cached)."""
        missing = np.array([i for i in idx if int(i) not in self._cache], np.int64)
        if missing.size:
            for i, f in zip(missing, self.train_source(missing)):
                self._cache[int(i)] = f
        return np.stack([self._cache[int(i)] for i in idx])


def _supervised_with(make_head: HeadFactory) -> MethodFactory:
    return lambda n, h: TinyNDC(None, make_head(n, h))


def extract_features(extractor: FrozenExtractor, data: str | None, dataset: str = "mnist",
                     split: str = "test", shift: bool = False) -> Features:
    """Run the frozen model once over the stream pool (batched; every run reuses it).

    ``split="test"``: labels from the training set, stream from the test set (the paper's layout,
    MNIST). ``split="train"``: both from disjoint parts of the training split
    (:func:`~.protocol.train_parts`) — the validation protocol that model selection uses;
    ``split="holdout"``: the same labels, the stream from the training split's second pool.
    ``shift``: the labelled and stream images changed as another camera or hand would (``shift.py``).
    """
    if split == "test":
        Xtr, ytr = load_images(dataset, "train", data)
        Xte, yte = load_images(dataset, "test", data)
    elif split in ("train", "holdout"):
        X, y = load_images(dataset, "train", data)
        parts = train_parts(y)
        Xtr, ytr = X[parts["labels"]], y[parts["labels"]]
        pool = parts["stream" if split == "train" else "holdout"]
        Xte, yte = X[pool], y[pool]
    else:
        raise InputError(f"--split: expected one of {', '.join(SPLITS)}, got {split!r}")
    if shift:
        from .shift import shifted
        Xtr, Xte = shifted(Xtr, 1), shifted(Xte, 2)
    return Features(ytr.astype(np.int64), extractor.extract(Xte), yte.astype(np.int64), extractor.hash,
                    train_source=lambda idx: extractor.extract(Xtr[idx]), split=split, dataset=dataset,
                    prior=load_prior(extractor.path, extractor.hash))


def fit_stream(pool: int, stream_length: int, score_last: int, dataset: str) -> tuple[int, int, str | None]:
    """(stream length, scoring window, a one-line note when either is shorter than asked) for a stream pool of
    ``pool`` images: a stream as long as the pool left nothing held out (forgetting was NaN), so it then leaves
    ``HELD_OUT_SHARE``; the window is within the stream (the title said "the last 1000 of 50")."""
    said = []
    if stream_length >= pool:
        held = max(1, round(HELD_OUT_SHARE * pool))
        if pool - held < 1:
            raise InputError(f"--stream-length: {dataset} has {pool} image(s) to stream from; at least 2 are needed, "
                             f"one streamed and one held out to measure forgetting")
        said.append(f"{dataset} has {pool} images to stream from: the stream is {pool - held} of them, not "
                    f"{stream_length}, and {held} are held out to measure forgetting")
        stream_length = pool - held
    if score_last > stream_length:
        said.append(f"scores on all {stream_length} predictions of the stream (--score-last {score_last})")
        score_last = stream_length
    return stream_length, score_last, ("note: " + "; ".join(said)) if said else None


def check_labelled(train_y: np.ndarray, class_names: Sequence[str], wanted: dict[str, int]) -> None:
    """InputError naming the class when one has fewer images in the training part than an option (``--labels``,
    the largest ``--sweep`` count) draws labelled samples from it: it was numpy's "Cannot take a larger sample than
    population" traceback."""
    have = [int(np.count_nonzero(train_y == c)) for c in range(len(class_names))]
    fewest = int(np.argmin(have))
    for option, k in wanted.items():
        if have[fewest] < k:
            raise InputError(f"{option} {k}: class {class_names[fewest]!r} has {have[fewest]} image(s) in the training "
                             f"part to draw {k} labelled samples from: give at most {have[fewest]}")


def split(seed: int, feats: Features, protocol: Protocol, labels_per_class: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Indices of (init samples from train, stream from test, held-out rest of test) for one seed."""
    return split_indices(seed, feats.train_y, feats.test_y, protocol.stream_length, labels_per_class)


def split_indices(seed: int, train_y: np.ndarray, test_y: np.ndarray, stream_length: int,
                  labels_per_class: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The protocol's random draw; the sensor node replays exactly this for the same seed."""
    rng = np.random.default_rng(seed)
    init = np.concatenate([rng.choice(np.flatnonzero(train_y == c), labels_per_class, replace=False)
                           for c in np.unique(train_y)])
    order = rng.permutation(test_y.size)
    return init, order[:stream_length], order[stream_length:]


def _predict_all(system: TinyNDC, X: np.ndarray) -> np.ndarray:
    if system.head is not None:
        return np.array([system.head.predict_one(x) for x in X], np.int64)
    return np.array([system.clusterer.pseudo_label(x)[0] for x in X], np.int64)  # type: ignore[union-attr]


def run_one(factory: MethodFactory, supervised: bool, feats: Features, seed: int,
            protocol: Protocol, labels_per_class: int, keep_predictions: bool = False) -> dict:
    """One method, one seed: scores on the last ``score_last`` predictions, forgetting, curve."""
    init, stream, held = split(seed, feats, protocol, labels_per_class)
    system = factory(feats.n_features, feats.extractor_hash)
    system.init_from_labelled(feats.train_rows(init), feats.train_y[init], feats.prior)
    old_classes = list(protocol.old_classes)
    new_classes = np.setdiff1d(np.unique(feats.train_y), old_classes)
    old = held[np.isin(feats.test_y[held], old_classes)]
    old_X, old_y = feats.test[old], feats.test_y[old]
    X, y = feats.test[stream], feats.test_y[stream]
    preds = np.empty(y.size, np.int64)
    old_acc = []
    seconds = 0.0
    for start in range(0, y.size, CHECKPOINT):
        t0 = time.perf_counter()
        for i in range(start, min(start + CHECKPOINT, y.size)):
            step = system.step(X[i], int(y[i]) if supervised else None)
            preds[i] = -1 if step.prediction is None else step.prediction
        seconds += time.perf_counter() - t0
        old_acc.append(accuracy_on(old_y, _predict_all(system, old_X), old_classes))
    tail = slice(max(0, y.size - protocol.score_last), y.size)
    scores = classification_scores(y[tail], preds[tail])
    head = system.head
    memory = {"state_bytes": sum(int(a.nbytes) for a in head.state_dict()["arrays"].values())} if head else {}
    if head is not None and hasattr(head, "replay_nbytes"):
        memory.update(replay_bytes=int(head.replay_nbytes), replay_label_bytes=int(head.label_nbytes))
    return {**scores, **memory,
            "forgetting_old": forgetting(max(old_acc), old_acc[-1]),
            "accuracy_old_heldout": old_acc[-1],
            "accuracy_new_classes": accuracy_on(y[tail], preds[tail], new_classes),
            "prequential_accuracy": 100.0 * float(np.mean(preds == y)),
            "labels_used": int(labels_per_class * np.unique(feats.train_y).size + (y.size if supervised else 0)),
            "pseudo_labels_learned": int(system.n_pseudo),
            "us_per_sample": 1e6 * seconds / y.size,
            "curve": rolling_accuracy(preds == y).tolist(),
            **({"predictions": preds.tolist()} if keep_predictions else {})}


def _mean_std(runs: list[dict], key: str) -> dict[str, float]:
    vals = np.array([r[key] for r in runs], np.float64)
    return {"mean": round(float(vals.mean()), 3), "std": round(float(vals.std()), 3)}


def summarize(runs: list[dict]) -> dict:
    """Mean ± std over seeds of every scalar score."""
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float))]
    return {k: _mean_std(runs, k) for k in keys}


def run_experiment(feats: Features, seeds: int = 5, protocol: Protocol = Protocol(),
                   sweep: tuple[int, ...] = (1, 10, 50, 100),
                   methods: dict[str, tuple[MethodFactory, bool]] | None = None,
                   heads: dict[str, HeadFactory] | None = None,
                   progress: Callable[[str], None] = lambda msg: None) -> dict:
    """The whole experiment: every method over ``seeds`` seeds, then the labelled-samples sweep."""
    methods = METHODS if methods is None else methods
    heads = HEADS if heads is None else heads
    result: dict = {"protocol": {**protocol.__dict__, "seeds": seeds, "old_classes": list(protocol.old_classes),
                                 "new_classes": np.setdiff1d(np.unique(feats.train_y),
                                                             protocol.old_classes).tolist()},
                    "extractor_hash": feats.extractor_hash, "n_features": feats.n_features,
                    "paper": PAPER, "methods": {}, "heads": {}, "sweep": {}, "curves": {}}
    for name, (factory, supervised) in methods.items():
        runs = []
        for seed in range(seeds):
            runs.append(run_one(factory, supervised, feats, seed, protocol, protocol.labels_per_class))
        progress(f"{name}: {np.mean([r['accuracy'] for r in runs]):.2f}%")
        result["methods"][name] = summarize(runs)
        result["curves"][name] = np.mean([r["curve"] for r in runs], axis=0).round(2).tolist()
    for name, make_head in heads.items():
        factory = _supervised_with(make_head)
        runs = [run_one(factory, True, feats, seed, protocol, protocol.labels_per_class) for seed in range(seeds)]
        result["heads"][name] = summarize(runs)
        progress(f"head {name} (true labels): {np.mean([r['accuracy'] for r in runs]):.2f}%")
    if {"latent_replay_fp32", "latent_replay_int8"} <= result["heads"].keys():
        fp32, int8 = result["heads"]["latent_replay_fp32"], result["heads"]["latent_replay_int8"]
        result["qlr"] = {
            "accuracy_fp32": fp32["accuracy"]["mean"], "accuracy_int8": int8["accuracy"]["mean"],
            "accuracy_loss": round(fp32["accuracy"]["mean"] - int8["accuracy"]["mean"], 3),
            "replay_bytes_fp32": fp32["replay_bytes"]["mean"], "replay_bytes_int8": int8["replay_bytes"]["mean"],
            "features_ratio": fp32["replay_bytes"]["mean"] / int8["replay_bytes"]["mean"],
            "with_labels_ratio": (fp32["replay_bytes"]["mean"] + fp32["replay_label_bytes"]["mean"])
                                 / (int8["replay_bytes"]["mean"] + int8["replay_label_bytes"]["mean"])}
    for k in sweep:
        row = {}
        for name in ("tinyndc", "tinycl"):
            factory, supervised = methods[name]
            runs = [run_one(factory, supervised, feats, seed, protocol, k) for seed in range(seeds)]
            row[name] = _mean_std(runs, "accuracy")
        result["sweep"][str(k)] = row
        progress(f"sweep k={k}: tinyndc {row['tinyndc']['mean']:.2f}%, tinycl {row['tinycl']['mean']:.2f}%")
    return result


def plot_curves(result: dict, path: Path) -> None:
    """PNG of the rolling accuracy along the stream, one line per method (mean over seeds)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=120)
    for name, curve in result["curves"].items():
        ax.plot(np.arange(1, len(curve) + 1), curve, label=name, linewidth=1.4)
    p = result["protocol"]
    ax.axvspan(p["stream_length"] - p["score_last"], p["stream_length"], color="0.92", label="scored window")
    ax.set_xlabel("stream position (samples)")
    ax.set_ylabel("accuracy over the last 200 samples (%)")
    ax.set_title(f"TinyNDC protocol on {p.get('dataset', 'MNIST')}, {p['labels_per_class']} labels/class, "
                 f"{p['seeds']} seeds")
    ax.set_ylim(50, 100)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _json_safe(value: Any) -> Any:
    """``value`` with NaN and inf as None: JSON has neither (a forgetting with no old-class image held out is NaN)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def write_json(result: dict, path: Path) -> None:
    """Write the result JSON (curves included) atomically; a score that is NaN or inf is null (valid JSON)."""
    write_atomic(path, json.dumps(_json_safe(result), indent=1, allow_nan=False).encode())


def load_extractor(model: str | None, dataset: str = "mnist", split: str = "test") -> FrozenExtractor:
    """The frozen extractor by name (``mnist_0to5_fp32``/``int8``) or path; None: the protocol's own.

    The training-split protocol's default is the model trained on the backbone part only
    (``<dataset>_0to5_trainsplit_fp32``), so no labelled or streamed image was seen in training.
    """
    if model is None:
        model = f"{model_stem(dataset if dataset in DATASETS else 'mnist', 'all' if split == 'test' else 'train')}_fp32"
    return FrozenExtractor(model_path(model), threads=2)
