"""``tinycl design``: a TyBox-style incremental model for a RAM / flash budget (the fourth seed).

For every candidate — a cut (the latent layer: below it frozen and int8, above it trained
online) × a structured-pruning ratio of the frozen convolutions (filters with the smallest L1
norm removed, with the next convolution's input channels) — it computes from the layer shapes:

* flash: the frozen part as the generated C holds it (``export/c_model.conv_flash_bytes``: Winograd-transformed
  int16 filters, 3.6 B per int8 weight, where the C runs them so; a bias and a scale per filter) + the upper
  layers' initial fp32 weights;
* RAM: trainable fp32 upper layers and classifier with their gradients, one mini-batch of fp32
  activations and their gradients for the upper part, the frozen part's largest int8
  input + output activation pair, and what is left becomes the int8 replay memory (latent + 1
  label byte per pattern, capped at the preset's memory size): TyBox's "largest buffer that fits";
* MACs: frozen forward, upper forward, learning MACs per stream sample;

then measures accuracy on the training-split validation protocol (true labels, a short stream,
the int8 frozen part quantised by onnxruntime with calibration images from the labels part) for
every candidate that fits, and writes the best one: the int8 frozen ONNX, the trained-from-here
upper layers' ONNX, the C source of the int8 frozen part (``export/c_model.py``, the one
generator: ``c/tinycl_model.h`` and ``.c``; when the upper layers stay frozen, also the C of the
whole pruned int8 model in ``c_full/``, which the C core's forward runs) and a card (JSON).
A pruned model is tried as it is and after a short fine-tune of each ``--finetune-epochs`` count
when PyTorch is installed (:func:`finetune`): the fine-tune is a candidate dimension chosen on the
same validation protocol, not a fixed step (one hand-set epoch cost a pruned Fashion model 0.9 points); a
fine-tune changes no shape, so a candidate that does not fit is not fine-tuned. The protocol is that of the model
card's dataset unless ``--dataset`` names another. A run works in a folder of its own inside ``--out`` and, once it
has a result, replaces the previous choice with it (:func:`_publish`): a budget that nothing fits leaves no choice
(a card saying so), and a run that fails or is stopped leaves the previous choice and its card as they were.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import presets
from ..arg_types import byte_size, count, counts, numbers, output_folder
from ..core.errors import InputError
from ..core.latent import LatentUpperHead
from ..core.layers import Conv2d, Linear
from ..export import c_model
from ..export.latent_onnx import _safe, node_name, split_model, upper_to_onnx
from ..extractor import FrozenExtractor, model_path
from ..model_card import card_path, read_card, trained_on_note
from ..storage import write_atomic
from ..training.train_frozen import export_int8
from . import tinyndc as exp
from .latent import _fresh, learning_macs, run_stream
from .protocol import forbid_test_split, load_images, train_parts

N_CLASSES = 10


def protocol_dataset(model: Path, given: str | None) -> tuple[str, str | None]:
    """The dataset whose training-split protocol scores the candidates: ``--dataset``, else the one the model's card
    names (an MNIST model scored on Fashion-MNIST by default would choose for the wrong images); and a note when the
    model was trained on that whole training split, since its validation stream then holds the model's own
    training images and every accuracy is optimistic."""
    cp = card_path(model)
    card = read_card(cp)[0] if cp is not None else None
    dataset = given or (card.dataset if card is not None else None)
    if not dataset:
        raise InputError(f"--dataset: {model.name}'s card names no dataset; say which images score the candidates")
    return dataset, trained_on_note(card, model.name, dataset)


#: what a design reads, prunes, fine-tunes and generates C for: the frozen model as ``make train-frozen`` writes it
DESIGN_OPS = frozenset({"Conv", "Relu", "MaxPool", "Flatten", "Gemm", "BatchNormalization"})
DESIGN_INPUT = (1, 28, 28)


def check_designable(model: Path) -> None:
    """InputError, in one line, for a model the design cannot take: its pruning, fine-tune and C generator know the
    layers ``make train-frozen`` writes (3x3 convolution, ReLU and 2x2 max-pool blocks, then a linear embedding) on
    the protocol's 28x28 grey images. Without this, another model (a user's MobileNet) scored no candidate and was
    reported as "no candidate fits the budget"."""
    from ..model_tools import input_dims, load_model

    onnx_model = load_model(model)
    dims = input_dims(onnx_model)
    ops = {n.op_type for n in onnx_model.graph.node}
    if "QuantizeLinear" in ops:
        raise InputError(f"--model {model.name}: an int8 model; give its fp32 model (the design quantizes the "
                         f"frozen part of each candidate itself)")
    problems = sorted(ops - DESIGN_OPS)
    what = [f"operators {', '.join(problems)}"] if problems else []
    if dims != DESIGN_INPUT:
        what.append(f"input {'x'.join(map(str, dims))}")
    if "MaxPool" not in ops:
        what.append("no max-pool block end to cut at")
    what += _block_problems(onnx_model)
    if "MaxPool" in ops:
        what += _tail_problems(onnx_model)
    if what:
        raise InputError(f"--model {model.name}: tinycl design takes a model as `make train-frozen` writes it "
                         f"(1x28x28 grey input; 3x3 convolution, ReLU and 2x2 max-pool blocks, then Flatten, Gemm, "
                         f"BatchNormalization); this one has {'; '.join(what)}")


def _block_problems(onnx_model: Any) -> list[str]:
    """The convolutions the C generator (``export/c_model.py``) cannot run: each must be 3x3, stride 1, padding 1,
    one group, and feed a ReLU and then a 2x2 stride-2 max-pool (it scored every candidate before, then failed)."""
    from onnx import helper

    nodes = list(onnx_model.graph.node)
    consumers = _consumers(nodes)

    def next_op(node: Any) -> Any:
        after = consumers.get(node.output[0], [])
        return after[0] if len(after) == 1 else None

    def attributes(node: Any) -> dict[str, Any]:
        return {x.name: helper.get_attribute_value(x) for x in node.attribute}

    problems = []
    for n in (n for n in nodes if n.op_type == "Conv"):
        relu = next_op(n)
        pool = next_op(relu) if relu is not None and relu.op_type == "Relu" else None
        if not c_model.conv_runs(attributes(n)):
            problems.append(f"convolution {node_name(n)} is not 3x3 with stride 1 and padding 1")
        elif pool is None or pool.op_type != "MaxPool" or not c_model.pool_runs(attributes(pool)):
            problems.append(f"convolution {node_name(n)} is not followed by a ReLU and a 2x2 stride-2 "
                            f"max-pool")
    return problems[:3]


def _consumers(nodes: list[Any]) -> dict[str, list[Any]]:
    """tensor name → the nodes that read it (each once, in graph order)."""
    consumers: dict[str, list[Any]] = {}
    for n in nodes:
        for name in dict.fromkeys(n.input):
            consumers.setdefault(name, []).append(n)
    return consumers


#: what follows the last block: the C generator runs a Gemm only with the BatchNormalization after it
DESIGN_TAIL = ("Flatten", "Gemm", "BatchNormalization")


def _tail_problems(onnx_model: Any) -> list[str]:
    """What follows the last max-pool if it is not Flatten, Gemm, BatchNormalization, then the output: a model without
    the BatchNormalization (a PyTorch export of Linear alone) scored every candidate, then failed in the C generator
    ("features: expected one consumer") with the new choice's files written beside the last run's card."""
    nodes = list(onnx_model.graph.node)
    consumers = _consumers(nodes)
    last = max(i for i, n in enumerate(nodes) if n.op_type == "MaxPool")
    tail, cur = [], nodes[last].output[0]
    outputs = {o.name for o in onnx_model.graph.output}
    while cur not in outputs:
        after = consumers.get(cur, [])
        if len(after) != 1:
            tail.append(f"{len(after)} branches")
            break
        tail.append(after[0].op_type)
        cur = after[0].output[0]
    if tuple(tail) == DESIGN_TAIL:
        return []
    return [f"{', '.join(tail) or 'nothing'} after its last max-pool, not {', '.join(DESIGN_TAIL)}"]


def prune_model(path: Path, ratio: float, cut: str, out: Path) -> Path:
    """Remove ``ratio`` of the filters (smallest L1 norm) of every conv below the cut that feeds another conv below it."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    if ratio <= 0:
        onnx.save(model, str(out))
        return out
    nodes = list(model.graph.node)
    at = next(i for i, n in enumerate(nodes) if n.name == cut or cut in n.output)
    convs = [n for n in nodes[:at + 1] if n.op_type == "Conv"]
    inits = {t.name: t for t in model.graph.initializer}
    arr = {name: numpy_helper.to_array(t) for name, t in inits.items()}
    for a, b in zip(convs, convs[1:]):
        W = arr[a.input[1]]
        keep = np.sort(np.argsort(-np.abs(W).reshape(W.shape[0], -1).sum(1))[:max(1, int(round(W.shape[0] * (1 - ratio))))])
        arr[a.input[1]] = W[keep]
        if len(a.input) > 2:
            arr[a.input[2]] = arr[a.input[2]][keep]
        arr[b.input[1]] = arr[b.input[1]][:, keep]
    for name, t in inits.items():
        t.CopyFrom(numpy_helper.from_array(arr[name].astype(numpy_helper.to_array(t).dtype), name))
    onnx.save(model, str(out))
    return out


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


def finetune(path: Path, X: np.ndarray, y: np.ndarray, epochs: int, out: Path, seed: int = 0,
             lr: float = 1e-3, batch: int = 64) -> dict[str, Any]:
    """Short fine-tune of a pruned model after pruning (TyBox): PyTorch, experiment time only.

    The ONNX graph (Conv / Relu / MaxPool / Flatten / Gemm / BatchNormalization, as
    ``train_frozen`` writes it) is run by torch.nn.functional with its initializers as
    parameters; a temporary linear classifier on the embedding gives a cross-entropy loss on the
    backbone part's labelled images (the classes the model was trained on); the weights are
    written back into the same graph. BatchNormalization keeps its running statistics (eval
    mode) and learns its scale and shift.
    """
    import onnx
    import torch
    import torch.nn.functional as tf
    from onnx import helper, numpy_helper

    torch.manual_seed(seed)
    model = onnx.load(str(path))
    g = model.graph
    params = {t.name: torch.nn.Parameter(torch.from_numpy(numpy_helper.to_array(t).copy()))
              for t in g.initializer if numpy_helper.to_array(t).dtype == np.float32}
    # by position: nodes without a name (or with one name twice) would share one node's attributes
    attrs = [{a.name: helper.get_attribute_value(a) for a in n.attribute} for n in g.node]
    bn_stats = {n.input[i] for n in g.node if n.op_type == "BatchNormalization" for i in (3, 4)}
    for name in bn_stats:
        params[name].requires_grad_(False)

    def forward(x: "torch.Tensor") -> "torch.Tensor":
        env = {g.input[0].name: x}
        for n, a in zip(g.node, attrs):
            ins = [env.get(i, params.get(i)) for i in n.input]
            if n.op_type == "Conv":
                z = tf.conv2d(ins[0], ins[1], ins[2] if len(ins) > 2 else None, stride=a.get("strides", [1, 1]),
                              padding=a.get("pads", [0, 0, 0, 0])[:2])
            elif n.op_type == "Relu":
                z = tf.relu(ins[0])
            elif n.op_type == "MaxPool":
                z = tf.max_pool2d(ins[0], a["kernel_shape"], a.get("strides", a["kernel_shape"]))
            elif n.op_type == "Flatten":
                z = torch.flatten(ins[0], a.get("axis", 1))
            elif n.op_type == "Gemm":
                z = tf.linear(ins[0], ins[1] if a.get("transB", 0) else ins[1].T, ins[2])
            elif n.op_type == "BatchNormalization":
                z = tf.batch_norm(ins[0], ins[3], ins[4], ins[1], ins[2], False, 0.0, a.get("epsilon", 1e-5))
            else:
                raise InputError(f"fine-tune: operator {n.op_type} ({node_name(n)}) is not supported")
            env[n.output[0]] = z
        return env[g.output[0].name]

    classes = np.unique(y)
    with torch.no_grad():
        dim = forward(torch.zeros((1, 1) + X.shape[1:])).shape[1]
    clf = torch.nn.Linear(dim, len(classes))
    trainable = [p for p in params.values() if p.requires_grad] + list(clf.parameters())
    opt = torch.optim.Adam(trainable, lr=lr)
    target = torch.from_numpy(np.searchsorted(classes, y).astype(np.int64))
    images = torch.from_numpy(X.astype(np.float32)[:, None] / 255.0)
    rng = np.random.default_rng(seed)
    losses = []
    for _ in range(epochs):
        perm = rng.permutation(len(y))
        for s in range(0, len(y), batch):
            idx = torch.from_numpy(perm[s:s + batch])
            loss = tf.cross_entropy(clf(forward(images[idx])), target[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(float(loss.detach()))
    for t in g.initializer:
        if t.name in params:
            t.CopyFrom(numpy_helper.from_array(params[t.name].detach().numpy().astype(np.float32), t.name))
    onnx.save(model, str(out))
    k = max(len(losses) // 10, 1)
    return {"epochs": epochs, "images": int(len(y)), "loss_first": round(float(np.mean(losses[:k])), 4),
            "loss_last": round(float(np.mean(losses[-k:])), 4)}


@dataclass
class Costs:
    flash: int
    ram_fixed: int
    latent: int
    lower_macs: int
    upper_macs: int


def costs(lower_path: Path, split, minibatch: int, train_upper: bool = True) -> Costs:
    """Flash, RAM before the replay memory, latent size and MACs of one cut (see module doc)."""
    import onnx
    from onnx import numpy_helper, shape_inference

    m = shape_inference.infer_shapes(onnx.load(str(lower_path)))
    inits = {t.name: numpy_helper.to_array(t) for t in m.graph.initializer}
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim][1:]
              for v in list(m.graph.value_info) + list(m.graph.input) + list(m.graph.output)}
    flash, macs, peak = 0, 0, 0
    for n in m.graph.node:
        size_in = int(np.prod(shapes.get(n.input[0], [0]) or [0]))
        size_out = int(np.prod(shapes.get(n.output[0], [0]) or [0]))
        peak = max(peak, size_in + size_out)
        if n.op_type == "Conv":
            W = inits[n.input[1]]
            flash += c_model.conv_flash_bytes(W.shape[1], W.shape[0])   # what the generated C holds
            macs += size_out * int(np.prod(W.shape[1:]))
    head = LatentUpperHead(split.latent_shape, _fresh(split))
    up_params = sum(layer.W.size + layer.b.size for layer in head.upper if isinstance(layer, (Conv2d, Linear)))
    cls_params = head.embed_dim * N_CLASSES + N_CLASSES
    shape, acts = split.latent_shape, 0
    for layer in head.upper:
        shape = layer.out_shape(shape)
        acts += int(np.prod(shape))
    if train_upper:
        ram = (8 * (up_params + cls_params)                    # fp32 weights + gradients
               + 2 * 4 * minibatch * (int(np.prod(split.latent_shape)) + acts + N_CLASSES)  # activations + their gradients
               + peak)                                          # int8 frozen forward, one sample
    else:  # upper layers run from flash, one pattern at a time; only the classifier learns (TyBox)
        ram = 8 * cls_params + 4 * (int(np.prod(split.latent_shape)) + acts) + 2 * 4 * minibatch * (head.embed_dim + N_CLASSES) + peak
    upper_macs = sum(head.forward_macs(N_CLASSES))
    return Costs(flash + 4 * up_params, ram, int(np.prod(split.latent_shape)), macs, upper_macs)


def default_cuts(model: Path) -> list[str]:
    """MaxPool outputs (block ends) are the natural latent layers: each by its node's name, or by its output tensor's
    for a node without one (matched on the operator: exporters name nodes ``maxpool2``, ``MaxPool_5`` or not at
    all, and a name test found no cut in such a model, reported as "no candidate fits the budget")."""
    return [name for name, _ in _pool_outputs(model)]


def _pool_outputs(model: Path) -> list[tuple[str, str]]:
    """(cut name, output tensor) of each max-pool: the name is the node's, else its output's."""
    import onnx

    nodes = onnx.load(str(model), load_external_data=False).graph.node
    return [(node_name(n), n.output[0]) for n in nodes if n.op_type == "MaxPool"]


def _label(cut: str) -> str:
    """A cut's short name in the table: the block of a PyTorch 2 name (``/features/features.11/MaxPool``), else
    the whole name (an older exporter's ``MaxPool_5`` has no "/")."""
    parts = [p for p in cut.split("/") if p]
    return parts[-2] if len(parts) >= 2 else cut


# what a design writes for its choice, in --out
CHOSEN = UPPER, FULL_INT8, C_DIR, C_FULL_DIR = ("chosen_upper.onnx", "chosen_full.int8.onnx", "c", "c_full")
CARD = "card.json"


STAGE_PREFIX = ".design-"      # a run's own folder inside --out


def _running(pid: str) -> bool:
    """Whether the process ``pid`` (a stage's owner, from its name) still runs."""
    try:
        os.kill(int(pid), 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:     # another user's
        return True
    return True


def _remove(p: Path) -> None:
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    else:
        p.unlink(missing_ok=True)


def _publish(stage: Path, work: Path, card: dict[str, Any]) -> None:
    """This run's files and card, from its own folder ``stage`` into ``work``, in place of the previous choice: the
    card goes first and comes back last, so that the folder never holds a card naming files it does not describe
    (a budget that nothing fits would otherwise leave the last budget's C to be flashed). Paths in the card are
    ``work``'s. Before, a run cleared the previous choice at its start: one that failed or was stopped while scoring
    left none."""
    (work / CARD).unlink(missing_ok=True)
    for name in CHOSEN:
        _remove(work / name)
    for p in stage.iterdir():
        _remove(work / p.name)
        p.rename(work / p.name)
    text = json.dumps(card, indent=1).replace(json.dumps(str(stage))[1:-1], json.dumps(str(work))[1:-1])
    write_atomic(work / CARD, text.encode())


def main(args) -> int:
    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 150)
    ft_epochs = sorted(set(args.finetune_epochs)) or [0]
    if not args.prune:
        raise InputError("--prune: give at least one ratio (0: no pruning)")
    if ft_epochs != [0] and not torch_available():
        console.log("PyTorch is not installed: pruned models are tried without a fine-tune")
        ft_epochs = [0]
    model = model_path(args.model) if not Path(args.model).exists() else Path(args.model)
    if model.is_dir():
        raise InputError(f"--model {model}: a directory; give the .onnx file")
    if not model.is_file():
        raise InputError(f"--model: {model} not found")
    check_designable(model)
    args.dataset, note = protocol_dataset(model, args.dataset)
    if note:
        console.log(f"[yellow]note: {note}[/]")
    pools = _pool_outputs(model)
    cuts = [args.cut] if args.cut else [name for name, _ in pools]
    if args.cut and not any(args.cut in pool for pool in pools):   # a node or its output tensor
        raise InputError(f"--cut {args.cut}: the design cuts at the end of a block, a max-pool's output "
                         f"({', '.join(name for name, _ in pools)}): the generated C runs whole blocks")
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    for old in work.glob(f"{STAGE_PREFIX}*"):     # of a run killed before it could remove its own (not one going on)
        if not _running(old.name.removeprefix(STAGE_PREFIX).split("-")[0]):
            shutil.rmtree(old, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(prefix=f"{STAGE_PREFIX}{os.getpid()}-", dir=work))
    try:
        return _design(args, model, cuts, ft_epochs, stage, work, console)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _design(args, model: Path, cuts: list[str], ft_epochs: list[int], stage: Path, work: Path, console) -> int:
    """Score every candidate with files in ``stage``, print the table, then publish the choice and card in ``work``."""
    from rich.table import Table

    ram, flash = args.ram, args.flash
    ratios = tuple(args.prune)
    rows: list[dict[str, Any]] = []
    with forbid_test_split():
        X, y = load_images(args.dataset, "train", args.data)
        parts = train_parts(y)
        calib = X[parts["labels"]][::4].astype(np.float32)[:, None] / 255.0
        backbone = np.random.default_rng(0).permutation(parts["backbone"])[:args.finetune_images]
        pruned_models: dict[tuple[str, float], Path] = {}
        tuned_models: dict[tuple[str, float, int], tuple[Path, Any]] = {}
        # the fine-tune's epochs are a candidate dimension like the rest (0: the pruned model as it is);
        # an unpruned model is never fine-tuned
        grid = [(c, r, e, t) for c in cuts for r in ratios for e in (ft_epochs if r > 0 else [0])
                for t in (True, False)]
        for cut, ratio, epochs, train_upper in grid:
                row: dict[str, Any] = {"cut": cut, "prune": ratio, "finetune_epochs": epochs, "train_upper": train_upper}
                stem = f"cand_{_safe(cut)}_p{int(ratio * 100)}"
                if (cut, ratio) not in pruned_models:
                    pruned_models[(cut, ratio)] = prune_model(model, ratio, cut, stage / f"{stem}.onnx")
                pruned, ft = pruned_models[(cut, ratio)], None
                row.update(pruned_model=str(pruned), finetune=ft)
                # a fine-tune changes weights, never shapes: the costs are the pruned model's, and a candidate
                # that does not fit the budget is not fine-tuned
                split = split_model(pruned, cut, stage)
                c = costs(split.lower_path, split, presets.LATENT["minibatch"], train_upper)
                n_replay = min((ram - c.ram_fixed) // (c.latent + 1), presets.LATENT["memory_size"])
                row.update(flash=c.flash, ram_fixed=c.ram_fixed, latent=c.latent, replay=int(max(n_replay, 0)),
                           ram=int(c.ram_fixed + max(n_replay, 0) * (c.latent + 1)),
                           frozen_macs=c.lower_macs, upper_macs=c.upper_macs)
                row["fits"] = bool(c.flash <= flash and n_replay >= args.min_replay)
                if row["fits"] and epochs > 0:
                    if (cut, ratio, epochs) not in tuned_models:
                        tuned = stage / f"{stem}_ft{epochs}.onnx"
                        tuned_models[(cut, ratio, epochs)] = (tuned, finetune(pruned, X[backbone], y[backbone],
                                                                                epochs, tuned))
                    pruned, ft = tuned_models[(cut, ratio, epochs)]
                    row.update(pruned_model=str(pruned), finetune=ft)
                    split = split_model(pruned, cut, stage)
                if row["fits"]:
                    int8 = split.lower_path.with_name(split.lower_path.stem + ".int8.onnx")
                    export_int8(split.lower_path, int8, calib)
                    lower = FrozenExtractor(int8, threads=2)
                    final = exp.extract_features(FrozenExtractor(pruned, threads=2), args.data, args.dataset, "train")
                    latent = exp.extract_features(lower, args.data, args.dataset, "train")
                    maker = lambda n, h, s=split, r=row: LatentUpperHead(  # noqa: E731
                        s.latent_shape, _fresh(s), extractor_hash=h, quantization="channel",
                        **{**{k: v for k, v in presets.LATENT.items() if k != "cut"}, "memory_size": max(r["replay"], 1),
                           **({} if r["train_upper"] else {"upper_lr_scale": 0.0})})
                    protocol = exp.Protocol(stream_length=args.stream)
                    res = run_stream(maker, True, False, final, latent, 0, protocol, 10)
                    row.update(accuracy=round(res["accuracy"], 2), accuracy_new=round(res["accuracy_new_classes"], 2),
                               learning_macs=round(learning_macs(maker(latent.n_features, "")), 0),
                               int8_model=str(int8))
                rows.append(row)
    fits = [r for r in rows if r.get("accuracy") is not None]
    t = Table(title=f"design for RAM {ram:,} B, flash {flash:,} B — {args.dataset} training-split protocol")
    for col in ("cut", "prune", "fine-tune", "train upper", "flash B", "RAM B", "replay", "frozen MACs", "upper MACs", "learn MACs/sample",
                "accuracy", "new classes", "fits"):
        t.add_column(col)
    for r in rows:
        ft = r["finetune"]
        t.add_row(_label(r["cut"]), f"{r['prune']:.2f}",
                  (f"{r['finetune_epochs']} ep, not run" if r["finetune_epochs"] else "–") if ft is None
                  else f"{ft['epochs']} ep, loss {ft['loss_first']}→{ft['loss_last']}",
                  "yes" if r["train_upper"] else "no", f"{r['flash']:,}", f"{r['ram']:,}", str(r["replay"]),
                  f"{r['frozen_macs']:,}", f"{r['upper_macs']:,}", f"{r.get('learning_macs', 0):,.0f}",
                  str(r.get("accuracy", "–")), str(r.get("accuracy_new", "–")), "yes" if r["fits"] else "no")
    console.print(t)
    card: dict[str, Any] = {"budget": {"ram": ram, "flash": flash}, "model": model.name, "dataset": args.dataset,
                            "candidates": rows, "finetune_epochs": ft_epochs}
    if fits:
        best = max(fits, key=lambda r: (r["accuracy"], -r["flash"]))
        card["chosen"] = best
        card["files"] = _write_choice(best, stage, calib, model.name)
        console.print(f"chosen: cut {best['cut']}, prune {best['prune']}, replay {best['replay']}, "
                      f"accuracy {best['accuracy']}%")
    else:
        console.print("[red]no candidate fits the budget[/]")
    _publish(stage, work, card)
    console.print(f"wrote {work / CARD}")
    return 0 if fits else 1


def _write_choice(best: dict[str, Any], work: Path, calib: np.ndarray, model: str) -> dict[str, Any]:
    """The chosen candidate's files in ``work`` (the upper layers' ONNX, the C of its int8 frozen part; when the upper
    layers stay frozen, the whole int8 model and its C) and the card's list of them."""
    split = split_model(Path(best["pruned_model"]), best["cut"], work)
    head = LatentUpperHead(split.latent_shape, _fresh(split), upper_lr_scale=1.0 if best["train_upper"] else 0.0)
    for c in range(N_CLASSES):
        head._new_class(c)
    (work / UPPER).write_bytes(upper_to_onnx(head).SerializeToString())
    c_files = c_model.export(best["int8_model"], work / C_DIR)
    files: dict[str, Any] = {"frozen_int8": best["int8_model"], "upper": str(work / UPPER),
                             "frozen_c": [str(p) for p in c_files]}
    if not best["train_upper"]:   # the whole model is frozen: its int8 C runs on the C core as it is
        full = work / FULL_INT8
        export_int8(Path(best["pruned_model"]), full, calib)
        files.update(full_int8=str(full), full_c=[str(p) for p in c_model.export(full, work / C_FULL_DIR)])
    return files


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="frozen ONNX model (name or path)")
    p.add_argument("--ram", type=byte_size, required=True,
                   help="RAM budget, e.g. 256KiB (units B, kB, MB, GB, KiB, MiB, GiB)")
    p.add_argument("--flash", type=byte_size, required=True, help="flash budget, e.g. 1MiB")
    p.add_argument("--cut", default=None, help="one latent layer (default: every MaxPool output)")
    p.add_argument("--prune", type=numbers(0.0, 1.0), default=(0.0, 0.25, 0.5),
                   help="structured-pruning ratios to try, comma-separated, each in [0, 1)")
    p.add_argument("--dataset", default=None,
                   help="whose training-split protocol scores the candidates (default: the model card's dataset)")
    p.add_argument("--data", default=None)
    p.add_argument("--stream", type=count(1), default=3000, help="validation stream length per candidate")
    p.add_argument("--min-replay", type=count(0), default=100, help="fewest replay patterns a candidate must hold")
    p.add_argument("--out", type=output_folder, default="results/design",
                   help="folder for the chosen model and its card")
    p.add_argument("--finetune-epochs", type=counts(0), default=(0, 1),
                   help="fine-tune epochs to try for each pruned model, comma-separated (PyTorch, when "
                        "installed; 0: the pruned model as it is); chosen on validation like the rest")
    p.add_argument("--finetune-images", type=count(1), default=6000,
                   help="images of the backbone part (the classes the model was trained on) for the fine-tune")
