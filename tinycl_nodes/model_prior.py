"""The frozen model's class statistics: what it learned its own classes from, shipped beside it.

A frozen extractor was trained with labels on some classes (its card's ``train_classes``). The statistics of
its features on those training images — per class mean and count, and the shared within-class scatter — are
exactly a streaming-LDA head's state (``core/slda.py``; the one head state format), written beside the model
as ``<model>.classes`` by ``train_frozen`` and ``tinycl model classes NAME`` (the card says which dataset,
split and classes the model was trained on). A TinyNDC system made with ``model_prior=True``
(``presets.TINYCL``) starts its clusterer and its head from it together with the labelled samples
(``TinyNDC.init_from_labelled``): with one label per class, the old classes then start from thousands of
samples and the shared covariance from all of them, instead of from one sample each — weighed first by what the
labelled samples say they are worth on the robot's images (``core/prior_worth.py``).

The prior names classes by the card's ids: a robot whose label ids mean other things than the model's
training classes must not use it (``model_prior: false``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .core.errors import StateError, TinyclError
from .core.federated import HeadSnapshot, snapshot_from_head
from .core.slda import StreamingLDA
from .core.state import from_bytes, to_bytes
from .extractor import MODELS_DIR, FrozenExtractor, extractor_hash, model_not_found, model_path

SUFFIX = ".classes"


def prior_path(model: str | Path) -> Path:
    """Where the class statistics of ``model`` (a shipped model's name or an .onnx path) live."""
    return model_path(str(model)).with_suffix(SUFFIX)


def fit_prior(features: np.ndarray, labels: np.ndarray, xhash: str) -> StreamingLDA:
    """The streaming-LDA head of a model's training features (order-free: exact statistics), for extractor ``xhash``."""
    head = StreamingLDA(features.shape[1], refresh_every=len(labels) + 1, extractor_hash=xhash)
    for x, y in zip(features, labels):
        head.learn_one(x, int(y))
    head.refresh()
    return head


def write_prior(model: Path, head: StreamingLDA) -> Path:
    """Write ``head`` (``fit_prior``'s) as the class statistics of ``model``."""
    out = prior_path(model)
    out.write_bytes(to_bytes(head.state_dict()))
    return out


def copy_prior(src: Path, dst: Path) -> Path | None:
    """The class statistics of model ``src`` as those of ``dst``, a model of the same features (the same ONNX under
    another card: an installed candidate; an RGB re-export), stamped with ``dst``'s extractor hash. None if ``src``
    has none."""
    if not prior_path(src).is_file():
        return None
    state = from_bytes(prior_path(src).read_bytes())
    state["meta"]["extractor_hash"] = extractor_hash(dst)
    prior_path(dst).write_bytes(to_bytes(state))
    return prior_path(dst)


def load_prior(model: str | Path, xhash: str) -> HeadSnapshot | None:
    """The class statistics shipped beside ``model`` (None when it has none), checked against ``xhash``, the
    extractor the features come from; a corrupt file, or one of another extractor, is an error naming it."""
    path = prior_path(model)
    if not path.exists() and not path.is_symlink():
        return None                 # (a folder or a symlink loop there was taken for none, without a word)
    try:
        state = from_bytes(path.read_bytes())
        n_features = state["meta"]["n_features"]
        if not isinstance(n_features, int) or not 0 < n_features <= 4096:
            raise StateError(f"state: n_features {n_features!r} is not a feature count")
        head = StreamingLDA(n_features, extractor_hash=xhash)
        head.load_state_dict(state)
    except OSError as exc:
        raise TinyclError(f"model prior {path}: cannot be read ({exc.strerror or exc})") from None
    except (TinyclError, KeyError, TypeError) as exc:
        raise TinyclError(f"model prior {path}: {str(exc).splitlines()[0]}") from None
    return snapshot_from_head(head)


def shipped_prior(xhash: str) -> HeadSnapshot | None:
    """The class statistics, among the package's models, of the model whose extractor hash is ``xhash``
    (a node that sees only heads, e.g. the fleet bridge, finds its learner's prior by the hash they carry)."""
    for path in sorted(MODELS_DIR.glob(f"*{SUFFIX}")):
        model = path.with_suffix(".onnx")
        if model.is_file() and extractor_hash(model) == xhash:
            return load_prior(model, xhash)
    return None


def write_from_card(model: str | Path, data: str | None = None) -> tuple[Path, str]:
    """Compute and write ``model``'s class statistics from the images its card says it was trained on (the card's
    ``dataset``, ``split`` and ``train_classes``; ``tinycl model classes``): the file and a one-line summary."""
    from .experiments.protocol import forbid_test_split, load_images, train_parts
    from .model_card import card_path, read_card

    path = model_path(str(model))
    if not path.is_file():
        raise model_not_found(path)
    cp = card_path(path)
    if cp is None:
        raise TinyclError(f"{path} has no model card: which images it was trained on is unknown")
    _, doc = read_card(cp)
    missing = [k for k in ("dataset", "train_classes") if not doc.get(k)]
    if missing:
        raise TinyclError(f"{cp}: no {' or '.join(missing)}: which images {path.name} was trained on is unknown")
    split = doc.get("split", "all")                 # train: the backbone part of the training split
    with forbid_test_split():                       # a model's training images are training-split images
        X, y = load_images(doc["dataset"], "train", data)
    keep = np.sort(train_parts(y)["backbone"]) if split == "train" else np.arange(y.size)
    keep = keep[np.isin(y[keep], doc["train_classes"])]
    ext = FrozenExtractor(path)
    out = write_prior(path, fit_prior(ext.extract(X[keep]), y[keep], ext.hash))
    return out, (f"wrote {out} ({out.stat().st_size:,} bytes): {keep.size:,} training images of classes "
                 f"{sorted(set(y[keep].tolist()))} ({doc['dataset']}, split {split})")
