"""Bring your own backbone: ``tinycl model import``, ``tinycl model quantize`` and ``tinycl model range``.

``import``: a classifier the user trusts, cut at a layer (``onnx.utils.Extractor``: the sub-graph
from the input to that tensor), flattened to one feature vector per image, checked to run in
onnxruntime, and written with its model card beside it (the card the user gives, validated
against the cut model's input). ``quantize``: its int8 version (onnxruntime static quantization,
QDQ, per-channel weights) calibrated on images from a folder, fed through the one preprocessing
function, with the cosine similarity of int8 to fp32 features on held-out images reported, and the
feature range of the int8 model (and of the fp32 one when it has none) measured on those images
(``model_range``). ``range``: the feature range of a model over a folder of images, or over a
``.npy`` file of windows for an IMU or vibration model, so the nodes refuse poisoned features for it too.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from difflib import get_close_matches
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from . import model_range
from .arg_types import count, output_file
from .core._util import check_covariance_features
from .core.errors import TinyclError
from .export.latent_onnx import node_name
from .model_card import ModelCard, Preprocessing, check_card, load_card_file
from .storage import write_atomic

FEATURES = "features"


class ModelToolError(TinyclError):
    """A model that cannot be cut, checked or quantized; one line naming the problem."""


def load_model(path: Path) -> Any:
    """The ONNX model at ``path``, checked, with the weights an exporter wrote beside it (``torch.onnx.export``'s
    ``<model>.onnx.data``) read in; one line (ModelToolError) for a missing file, a missing weights file or a model
    onnx cannot read. The file is parsed once."""
    import onnx
    from onnx.external_data_helper import ExternalDataInfo, load_external_data_for_model, uses_external_data

    if not path.is_file():
        raise ModelToolError(f"model {path} is not a file" if path.exists() or path.is_symlink()
                             else f"model not found: {path}")
    if path.stat().st_size == 0:      # onnx said "does not have an ir_version set properly"
        raise ModelToolError(f"{path} is empty (0 bytes)")
    try:
        model = onnx.load(str(path), load_external_data=False)
        files = {ExternalDataInfo(t).location for t in model.graph.initializer if uses_external_data(t)}
        missing = sorted(f for f in files if not (path.parent / f).is_file())
        if missing:
            raise ModelToolError(f"{path}: its weights are in {', '.join(missing)}, which is not beside it (an "
                                 f"exporter writes a large model's weights to a file of their own: copy it with the "
                                 f"model)")
        if files:
            load_external_data_for_model(model, str(path.parent))
        onnx.checker.check_model(model)
    except ModelToolError:
        raise
    except Exception as exc:  # onnx raises several types for a bad file
        raise ModelToolError(f"{path} is not a valid ONNX model: {str(exc).splitlines()[0][:200]}") from None
    return model


def _cut_tensor(model: Any, cut: str) -> str:
    """The tensor ``cut`` names: a tensor (node output) or a node (its first output)."""
    g = model.graph
    tensors = {o for n in g.node for o in n.output} | {o.name for o in g.output}
    if cut in tensors:
        return cut
    nodes = {n.name: n for n in g.node if n.name}
    if cut in nodes:
        return nodes[cut].output[0]
    close = get_close_matches(cut, sorted(tensors | set(nodes)), n=3)
    names = [node_name(n) for n in g.node if n.output]
    raise ModelToolError(f"cut point {cut!r} is neither a node nor a tensor of the model"
                         + (f" (did you mean {', '.join(map(repr, close))}?)" if close else
                            f" ({len(names)} nodes, e.g. {', '.join(names[-3:])};"
                            f" `tinycl model layers` lists them with their shapes)"))


def with_output(payload: bytes, cut: str) -> tuple[bytes, str]:
    """The model (serialized) with the tensor ``cut`` names (a tensor or a node) as one more graph
    output, and that tensor's name: one forward pass gives the features and the activations at the cut."""
    import onnx
    from onnx import TensorProto, helper

    model = onnx.load_from_string(payload)
    tensor = _cut_tensor(model, cut)
    if tensor not in {o.name for o in model.graph.output}:
        model.graph.output.append(helper.make_tensor_value_info(tensor, TensorProto.FLOAT, None))
    return model.SerializeToString(), tensor


def cut_model(model: Any, cut: str | None, output: str | None = None) -> Any:
    """The sub-graph from the input to ``cut`` (else the model's output named ``output``, the card's
    ``feature_output``; else its first), its output flattened to one vector per image (n, d): the model's only
    output."""
    import onnx
    from onnx import helper

    g = model.graph
    inputs = [_image_input(model).name]
    outputs = [o.name for o in g.output]
    if not cut and output is not None and output not in outputs:
        raise ModelToolError(f"the model card's feature_output {output!r} is not an output of the model "
                             f"(outputs: {', '.join(outputs)})")
    target = _cut_tensor(model, cut) if cut else (output or outputs[0])
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
        sub = onnx.utils.Extractor(inferred).extract_model(inputs, [target])
    except Exception as exc:  # noqa: BLE001 - onnx's errors for a graph it cannot cut
        raise ModelToolError(f"cannot cut the model at {target!r}: {str(exc).splitlines()[0][:200]}") from None
    out = sub.graph.output[0]
    name = FEATURES if out.name != FEATURES else f"{FEATURES}_flat"
    sub.graph.node.append(helper.make_node("Flatten", [out.name], [name], axis=1, name="tinycl_features"))
    del sub.graph.output[:]
    sub.graph.output.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, ["n", None]))
    sub.producer_name = "tinycl model import"
    return sub


def _image_input(model: Any) -> Any:
    """The model's one input that is not a weight (a legacy export lists its weights as inputs too)."""
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise ModelToolError(f"the model has {len(inputs)} inputs ({names}): a backbone takes one image")
    return inputs[0]


def pin_input(model: Any, shape: tuple[int, ...]) -> list[str]:
    """Fix the input's dynamic axes but the batch (``torch.onnx.export`` with ``dynamic_axes`` or ``dynamic_shapes``
    on height and width) to ``shape``, the size the model card feeds: the extractor, the quantizer and the C
    export take fixed sizes. Returns the names of the axes fixed; an axis of fixed size is left for the card check."""
    dims = _image_input(model).type.tensor_type.shape.dim
    if len(dims) != len(shape) + 1:
        return []
    pinned = []
    for dim, size in zip(dims[1:], shape):
        if not dim.HasField("dim_value") or dim.dim_value <= 0:
            pinned.append(dim.dim_param or "?")
            dim.Clear()
            dim.dim_value = size
    if pinned:      # the exporter's shapes of inner tensors, in terms of the dynamic axes: inferred again
        del model.graph.value_info[:]
    return pinned


def _dims(dims: Any) -> tuple[int | str, ...]:
    """An ONNX shape's axes: a size, or a dynamic axis's name ("?" when it has none)."""
    return tuple(int(d.dim_value) if d.HasField("dim_value") else (d.dim_param or "?") for d in dims)


def input_dims(model: Any) -> tuple[int | str, ...]:
    """The image input's shape without the batch axis: sizes, or the names of dynamic axes."""
    return _dims(_image_input(model).type.tensor_type.shape.dim[1:])


def layers(src: str | os.PathLike[str], card_file: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """Every named node of ``src`` in graph order: its name, operator, first output and that output's shape (at the
    card's input size when ``card_file`` is given and the model's height and width are dynamic), and whether it is
    one vector per image (a pooling or flattening layer's output: where a backbone is usually cut)."""
    import onnx

    from .extractor import model_path

    model = load_model(model_path(str(src)))
    if card_file is not None:
        card = ModelCard(**load_card_file(card_file))
        if card.preprocessing is not None:
            pin_input(model, card.preprocessing.input_shape())
            # the card's input against the model's (a grey card on a colour model listed shapes it cannot run)
            check_card(card, input_dims(model), None, Path(src).name)
    try:
        model = onnx.shape_inference.infer_shapes(model)
    except Exception:  # noqa: BLE001 - shapes are a help here: without them the names still are
        pass
    shapes = {v.name: _dims(v.type.tensor_type.shape.dim)
              for v in [*model.graph.value_info, *model.graph.output] if v.type.tensor_type.HasField("shape")}
    rows = []
    for node in model.graph.node:
        if not node.output:
            continue
        shape = shapes.get(node.output[0])
        body = list(shape[1:]) if shape else []
        vector = bool(body) and body[0] != 1 and all(d == 1 for d in body[1:])
        rows.append({"node": node_name(node), "op": node.op_type, "output": node.output[0], "shape": shape,
                     "vector": vector})
    return rows


def _check_out(out_p: Path, overwrite: bool) -> None:
    """``--out`` names a new model, or ``overwrite`` says to replace one: nodes that use a model would refuse their
    heads once it changes (another extractor hash), so a mistyped ``--out`` must not replace it silently."""
    taken = [p for p in (out_p, out_p.with_suffix(".json")) if p.exists()]
    if taken and not overwrite:
        raise ModelToolError(f"--out {out_p}: {taken[0]} exists (heads learned on it would be refused as from "
                             f"another extractor); give --overwrite to replace it")


@contextmanager
def _staged(out_p: Path) -> Iterator[Path]:
    """Where to write the model ``out_p`` and its sidecars (card, range): a private folder beside it. They replace
    ``out_p``'s when the block ends without error, and the replaced model's range and class statistics go with it;
    on an error nothing at ``out_p`` has changed."""
    from .model_prior import prior_path

    out_p.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".tinycl-", dir=out_p.parent))
    try:
        yield stage / out_p.name
        for old in (model_range.range_path(out_p), prior_path(out_p)):
            old.unlink(missing_ok=True)
        for new in sorted(stage.iterdir()):
            os.replace(new, out_p.parent / new.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def import_model(src: str | os.PathLike[str], out: str | os.PathLike[str], card_file: str | os.PathLike[str],
                 cut: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """Cut ``src`` at ``cut``, write ``out`` (.onnx) and its card (``out`` with .json); returns
    what was written (shape, features, card path)."""
    from .extractor import model_path

    src_p, out_p = model_path(str(src)), Path(out)
    if out_p.suffix != ".onnx":
        raise ModelToolError(f"--out {out_p}: expected a .onnx path")
    _check_out(out_p, overwrite)
    card_doc = load_card_file(card_file)
    pre = ModelCard(**card_doc).preprocessing
    if pre is None:
        raise ModelToolError(f"model card {card_file}: no preprocessing section (input size, layout, colour, ...)")
    model = load_model(src_p)
    pinned = pin_input(model, pre.input_shape())
    model = cut_model(model, cut, card_doc.get("feature_output"))
    card_doc["feature_output"] = model.graph.output[0].name
    card = ModelCard(**card_doc)
    check_card(card, input_dims(model), [card.feature_output], f"{src_p.name} cut at {cut or 'its output'}")
    card_doc |= {"source_model": src_p.name, "cut": cut, "files": [out_p.name]}
    if pinned:
        card_doc["input_fixed"] = {"axes": pinned, "shape": list(pre.input_shape())}
    with _staged(out_p) as staged:
        write_atomic(staged, model.SerializeToString())
        write_atomic(staged.with_suffix(".json"), (json.dumps(card_doc, indent=1) + "\n").encode())
        ex = _runs(staged, card.preprocessing)
    return {"model": str(out_p), "card": str(out_p.with_suffix(".json")), "input": list(ex.input_shape),
            "n_features": ex.n_features, "hash": ex.hash, "pinned": pinned}


def _runs(path: Path, pre: Preprocessing) -> Any:
    """The extractor of the cut model ``path``, checked to run in onnxruntime on an image through the one
    preprocessing function and to give finite features."""
    from .extractor import FrozenExtractor

    try:
        ex = FrozenExtractor(path)
        probe = np.random.default_rng(0).integers(0, 256, (*pre.size, 3), dtype=np.uint8)
        feats = ex.extract([probe, probe[::-1]])
        if not np.isfinite(feats).all():
            raise ModelToolError("the cut model gives NaN or inf features on a test image")
    except TinyclError as exc:    # the staged file's path would name a file that is gone by the time it is read
        raise ModelToolError(f"the cut model does not run: {str(exc).replace(f'{path}: ', '')}") from None
    return ex


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    """The .png/.jpg/.jpeg files under ``folder`` (any depth), sorted."""
    from .datasets.image_folder import SUFFIXES

    root = Path(folder)
    if not root.is_dir():
        raise ModelToolError(f"image folder not found: {root}")   # --calib, and `model range --images`
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


def quantize_static_qdq(fp32_path: Path, int8_path: Path, images: np.ndarray) -> None:
    """onnxruntime static quantization: QDQ, per-channel int8 weights, int8 activations, calibrated (min/max) on
    ``images`` (prepared inputs, one per row), fed under the model's own input name (PyTorch exports name it
    ``input``, ``input.1``, ``x``) and one at a time to a model exported with a fixed batch of 1 (onnxruntime refused
    a batch of 32 there). Any failure of the quantizer (many types, many lines) is one ModelToolError line."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    model = load_model(fp32_path)
    image = _image_input(model)
    batch_dim = image.type.tensor_type.shape.dim[0]
    step = 1 if batch_dim.HasField("dim_value") and batch_dim.dim_value > 0 else 32

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._it = iter([{image.name: images[i:i + step]} for i in range(0, len(images), step)])

        def get_next(self):
            return next(self._it, None)

    pre = int8_path.with_suffix(".pre.onnx")
    source = _at_least_opset(model, fp32_path, QDQ_OPSET, int8_path.with_suffix(".opset.onnx"))
    quiet = _PerTensorFallback()
    logging.getLogger().addFilter(quiet)
    try:
        quant_pre_process(str(source), str(pre), skip_symbolic_shape=True)   # ONNX shape inference: fixed image sizes
        quantize_static(str(pre), str(int8_path), Reader(), quant_format=QuantFormat.QDQ,
                        per_channel=True, activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    except Exception as exc:  # noqa: BLE001 - onnxruntime's quantizer raises many types
        raise ModelToolError(f"cannot quantize {fp32_path.name}: "
                             f"{(str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]}") from None
    finally:
        logging.getLogger().removeFilter(quiet)
        pre.unlink(missing_ok=True)
        if source != fp32_path:
            source.unlink(missing_ok=True)


#: per-channel DequantizeLinear (its ``axis``) is opset 13's: a model of opset 11 or 12 quantized as it is gave an int8
#: model that onnxruntime refuses ("Unrecognized attribute: axis for operator DequantizeLinear")
QDQ_OPSET = 13


def _at_least_opset(model: Any, path: Path, opset: int, staged: Path) -> Path:
    """``path`` (``model`` loaded), or its conversion to ``opset`` written to ``staged`` if its ONNX opset is older."""
    import onnx
    from onnx import version_converter

    current = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=opset)
    if current >= opset:
        return path
    try:
        onnx.save(version_converter.convert_version(model, opset), str(staged))
    except Exception as exc:  # noqa: BLE001 - the converter raises several types
        raise ModelToolError(f"{path.name}: opset {current} cannot be converted to opset {opset}, which int8 "
                             f"quantization needs ({str(exc).splitlines()[0][:160]}): re-export it at opset "
                             f"{opset} or later") from None
    return staged


class _PerTensorFallback(logging.Filter):
    """onnxruntime's QDQ quantizer, asked for per-channel weights, quantizes a rank-1 weight (BatchNormalization's)
    per tensor, as wanted, but says "WARNING:root:Axis 1 is out-of-range for weight …" for it on the user's
    terminal: that line, and only it, is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.levelno == logging.WARNING and "is out-of-range for weight" in record.getMessage())


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity, whatever the features' scale (a fixed floor under the norms' product read 0 for a
    model whose features are all about 1e-10, as a randomly initialised torchvision MobileNetV3's logits are)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, 1) / np.maximum(norms, np.finfo(np.float64).tiny)


def quantize_model(src: str | os.PathLike[str], out: str | os.PathLike[str], calib: str | os.PathLike[str],
                   held_out: float = 0.2, max_images: int = 512, seed: int = 0,
                   latent_cut: str | None = None, overwrite: bool = False) -> dict[str, Any]:
    """int8 ``out`` of ``src`` calibrated on images of ``calib``; cosine int8 vs fp32 on the held-out part;
    the feature range of ``out``, and of ``src`` unless it has one (with ``latent_cut``, also at that layer where
    it can be split), on those images."""
    from .extractor import FrozenExtractor, model_card_of, model_path

    src_p, out_p = model_path(str(src)), Path(out)
    if out_p.suffix != ".onnx" or out_p.resolve() == src_p.resolve():
        raise ModelToolError(f"--out {out_p}: expected a new .onnx path")
    _check_out(out_p, overwrite)
    if not 0.0 < held_out < 1.0:
        raise ModelToolError(f"--held-out {held_out}: expected a fraction between 0 and 1")
    fp32 = FrozenExtractor(src_p)
    if fp32.quantized:      # onnxruntime's quantizer would add its nodes again and write a model that cannot load
        raise ModelToolError(f"{src_p.name} is already quantized (it has QuantizeLinear nodes): give its fp32 model")
    pre: Preprocessing | None = fp32.preprocessing
    if pre is None:
        raise ModelToolError(f"{src_p}: not an image model (its card has no preprocessing)")
    rng = np.random.default_rng(seed)
    images = read_images(calib, pre, max_images, rng)
    order = rng.permutation(len(images))
    n_test = max(1, int(round(held_out * len(images))))
    if n_test >= len(images):       # onnxruntime's own "No data is collected" said nothing of it
        raise ModelToolError(f"--held-out {held_out}: of {len(images)} images none is left to calibrate on: give a "
                             f"smaller fraction, or more images")
    test_idx, cal_idx = order[:n_test], order[n_test:]
    x_cal = fp32._prepare([images[i] for i in cal_idx], True)
    card, _ = model_card_of(src_p)
    card_doc = json.loads(model_card_path(src_p).read_text()) if card is not None else \
        {"preprocessing": pre.model_dump(mode="json")}
    card_doc |= {"files": [out_p.name], "quantized_from": src_p.name,
                 "calibration": {"folder": Path(calib).name, "images": int(cal_idx.size), "held_out": int(n_test)}}
    test = [images[i] for i in test_idx]
    measured = f"{len(images)} images of {calib}"
    with _staged(out_p) as staged:
        quantize_static_qdq(src_p, staged, x_cal)
        write_atomic(staged.with_suffix(".json"), (json.dumps(card_doc, indent=1) + "\n").encode())
        cos = cosine(fp32.extract(test), FrozenExtractor(staged).extract(test))
        card_doc["cosine_int8_fp32"] = {"mean": round(float(cos.mean()), 5), "min": round(float(cos.min()), 5),
                                        "held_out_images": int(n_test)}
        write_atomic(staged.with_suffix(".json"), (json.dumps(card_doc, indent=1) + "\n").encode())
        model_range.write(staged, model_range.measure(staged, images, latent_cut, measured))
    ranges = [model_range.range_path(out_p)]
    if model_range.bound(src_p, fp32.hash) is None:       # keep a range it has
        ranges.insert(0, model_range.write(src_p, model_range.measure(src_p, images, latent_cut, measured)))
    return {"model": str(out_p), "calibration_images": int(cal_idx.size), "held_out_images": int(n_test),
            "cosine_mean": float(cos.mean()), "cosine_min": float(cos.min()),
            "bytes_fp32": src_p.stat().st_size, "bytes_int8": out_p.stat().st_size, "ranges": [str(r) for r in ranges]}


def read_images(folder: str | os.PathLike[str], pre: Preprocessing, max_images: int,
                rng: np.random.Generator) -> list[np.ndarray]:
    """Up to ``max_images`` readable images of ``folder`` (a random draw, in file order), at the card's size;
    an unreadable file is one warning line and skipped; fewer than 10 is an error."""
    from .datasets.image_folder import log
    from .images import read_image_file

    files = image_files(folder)
    files = [files[i] for i in np.sort(rng.permutation(len(files))[:max_images])]
    images = []
    for f in files:
        try:
            images.append(read_image_file(str(f), pre.size))
        except TinyclError as exc:
            log.warning("skipped %s: %s", f, exc)
    if len(images) < 10:
        raise ModelToolError(f"image folder {folder}: {len(images)} readable images, at least 10 are needed")
    return images


def read_windows(file: str | os.PathLike[str], shape: tuple[int, ...], max_windows: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Up to ``max_windows`` windows (a random draw, in order) of a ``.npy`` array ``(N, *shape)`` of
    numbers — an IMU or vibration model's input, as its sensor node hands it over; at least 10."""
    try:
        arr = np.load(file, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise ModelToolError(f"windows file {file}: not a readable .npy array ({str(exc).splitlines()[0]})") from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "fiu":
        raise ModelToolError(f"windows file {file}: holds {getattr(arr, 'dtype', type(arr))}, not numbers")
    if arr.ndim < 2 or int(np.prod(arr.shape[1:])) != int(np.prod(shape)):
        raise ModelToolError(f"windows file {file}: shape {arr.shape}, the model takes (N, {', '.join(map(str, shape))})")
    if len(arr) < 10:
        raise ModelToolError(f"windows file {file}: {len(arr)} windows, at least 10 are needed")
    arr = arr[np.sort(rng.permutation(len(arr))[:max_windows])].astype(np.float32)
    if not np.isfinite(arr).all():
        raise ModelToolError(f"windows file {file}: contains NaN or inf")
    return arr.reshape(-1, *shape)


def measure_range(model: str | os.PathLike[str], images: str | os.PathLike[str] | None = None,
                  max_samples: int = 2000, latent_cut: str | None = None, seed: int = 0,
                  windows: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Write ``model``'s feature range (``model_range``) measured on up to ``max_samples`` images of a
    folder (an image model) or windows of a ``.npy`` file (an IMU or vibration model)."""
    from .extractor import FrozenExtractor, model_path

    if (images is None) == (windows is None):
        raise ModelToolError("model range: give a folder of images or a .npy file of windows (one of them)")
    path = model_path(str(model))
    ex, rng = FrozenExtractor(path), np.random.default_rng(seed)
    if windows is not None:
        X: Any = read_windows(windows, ex.input_shape, max_samples, rng)
        source = f"{len(X)} windows of {windows}"
    else:
        if ex.preprocessing is None:
            raise ModelToolError(f"{path}: not an image model (its card has no preprocessing): give --windows")
        X = read_images(images, ex.preprocessing, max_samples, rng)
        source = f"{len(X)} images of {images}"
    entry = model_range.measure(path, X, latent_cut, source)
    return {**entry, "path": str(model_range.write(path, entry))}


def model_card_path(model: Path) -> Path:
    from .model_card import card_path

    p = card_path(model)
    if p is None:
        raise ModelToolError(f"{model}: no model card")
    return p


OVERWRITE_HELP = ("replace the model at --out (heads learned on it are then refused as from another extractor; "
                  "its range and class statistics are removed)")


def add_arguments(model_parser: Any) -> None:
    """``tinycl model import|layers|quantize|range|classes`` (cli.py keeps only the hook)."""
    sub = model_parser.add_subparsers(dest="model_command", required=True)
    imp = sub.add_parser("import", help="cut a classifier into a feature extractor, check it, write its card")
    imp.add_argument("model", help="the ONNX classifier (or backbone)")
    imp.add_argument("--cut", default=None, help="node or tensor name whose output are the features "
                                                 "(default: the model's output)")
    imp.add_argument("--card", required=True, help="model card (YAML or JSON): preprocessing, dataset, class_names")
    imp.add_argument("--out", type=output_file, required=True,
                     help="the .onnx to write; its card goes beside it (.json)")
    imp.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    imp.set_defaults(func=_import_cmd)
    lay = sub.add_parser("layers", help="the model's nodes with their output shapes, to choose --cut: the vectors "
                                        "per image (pooling, flattening) are where a backbone is usually cut")
    lay.add_argument("model", help="the ONNX classifier")
    lay.add_argument("--card", default=None, help="its model card: shapes at the card's size when the model's "
                                                  "height and width are dynamic")
    lay.add_argument("--last", type=int, default=25, help="show the last N nodes (default 25; 0: all)")
    lay.set_defaults(func=_layers_cmd)
    q = sub.add_parser("quantize", help="int8 (static, per-channel QDQ) calibrated on a folder of images")
    q.add_argument("model", help="an fp32 .onnx with its card (e.g. from tinycl model import)")
    q.add_argument("--calib", required=True, help="folder of .png/.jpg images (any depth)")
    q.add_argument("--out", type=output_file, required=True, help="the int8 .onnx to write; its card goes beside it")
    q.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    q.add_argument("--held-out", type=float, default=0.2, help="fraction of the images kept out of calibration "
                                                               "to measure int8 vs fp32 (default 0.2)")
    q.add_argument("--max-images", type=count(1), default=512, help="at most this many images (default 512)")
    q.set_defaults(func=_quantize_cmd)
    r = sub.add_parser("range", help="measure a model's feature range on a folder of images or a file of windows "
                                     "(nodes refuse features beyond 4x it); quantize does it for both models")
    r.add_argument("model", help="an .onnx with its card")
    what = r.add_mutually_exclusive_group(required=True)
    what.add_argument("--images", help="folder of .png/.jpg images (any depth), like the robot's")
    what.add_argument("--windows", help=".npy array (N, *the model's input), e.g. IMU windows (N, 6, 50) as the "
                                        "sensor sends them")
    r.add_argument("--max-images", "--max-samples", type=count(1), default=2000, dest="max_samples",
                   help="at most this many images or windows")
    r.set_defaults(func=_range_cmd)
    c = sub.add_parser("classes", help="write the class statistics of the images the model was trained on "
                                       "(<model>.classes: the tinycl preset starts from them; its card says which)")
    c.add_argument("model", help="a shipped model's name (e.g. mnist_0to5_fp32) or an .onnx with its card")
    c.add_argument("--data", default=None, help="the datasets folder (default: ../shared/data or $TINYCL_DATA)")
    c.set_defaults(func=_classes_cmd)


def _classes_cmd(args: Any) -> int:
    from .model_prior import write_from_card

    print(write_from_card(args.model, args.data)[1])
    return 0


def _layers_cmd(args: Any) -> int:
    from rich.console import Console
    from rich.table import Table

    if args.last < 0:
        raise ModelToolError(f"--last {args.last}: expected 0 (all) or more")
    rows = layers(args.model, args.card)
    shown = rows[-args.last:] if args.last else rows
    table = Table(title=f"{Path(args.model).name}: {len(rows)} nodes" + (f", the last {len(shown)}"
                                                                          if len(shown) < len(rows) else ""))
    for col in ("node (--cut)", "operator", "output shape", ""):
        table.add_column(col)
    for r in shown:
        shape = "×".join(map(str, r["shape"])) if r["shape"] else "?"
        table.add_row(r["node"], r["op"], shape, "one vector per image" if r["vector"] else "")
    Console(width=160).print(table)
    return 0


def _import_cmd(args: Any) -> int:
    r = import_model(args.model, args.out, args.card, args.cut, args.overwrite)
    fixed = f"; its dynamic axes {', '.join(r['pinned'])} fixed to the card's size" if r["pinned"] else ""
    print(f"wrote {r['model']} (input {tuple(r['input'])}, {r['n_features']} features, runs in onnxruntime{fixed}) "
          f"and its card {r['card']}; extractor hash {r['hash'][:12]}…")
    try:
        check_covariance_features(r["n_features"], "tinycl's clusterer and streaming-LDA head")
    except TinyclError as exc:       # CWR*, TinyOL and NCM heads still take it: said, not refused
        print(f"warning: {exc}")
    return 0


def _range_cmd(args: Any) -> int:
    from .presets import LATENT

    r = measure_range(args.model, args.images, args.max_samples, LATENT["cut"], windows=args.windows)
    latent = f", activations at {r['latent']['cut']} ≤ {r['latent']['abs_max']:.4g}" if "latent" in r else ""
    what = "windows" if args.windows else "images"
    print(f"wrote {r['path']}: |feature| ≤ {r['abs_max']:.4g} over {r['samples']} {what}{latent}; features beyond "
          f"{model_range.MARGIN:g}x that are refused")
    return 0


def _quantize_cmd(args: Any) -> int:
    from .presets import LATENT

    r = quantize_model(args.model, args.out, args.calib, args.held_out, args.max_images, latent_cut=LATENT["cut"],
                       overwrite=args.overwrite)
    print(f"wrote {r['model']} ({r['bytes_int8']} B, fp32 {r['bytes_fp32']} B), calibrated on "
          f"{r['calibration_images']} images; int8 vs fp32 features on {r['held_out_images']} held-out images: "
          f"cosine mean {r['cosine_mean']:.4f}, min {r['cosine_min']:.4f}; feature ranges {', '.join(r['ranges'])}")
    return 0
