"""``tinycl design``: a TyBox-style incremental model for a RAM / flash budget (the fourth seed).

For every candidate — a cut (the latent layer: below it frozen and int8, above it trained
online) × a structured-pruning ratio of the frozen convolutions (filters with the smallest L1
norm removed, with the next convolution's input channels) — it computes from the layer shapes:

* flash: int8 frozen part (1 B per weight, 4 B per bias and per output-channel scale) + the upper
  layers' initial fp32 weights;
* RAM: trainable fp32 upper layers and classifier with their gradients, one mini-batch of fp32
  activations and their gradients for the upper part, the frozen part's largest int8
  input + output activation pair, and what is left becomes the int8 replay memory (latent + 1
  label byte per pattern, capped at the preset's memory size): TyBox's "largest buffer that fits";
* MACs: frozen forward, upper forward, learning MACs per stream sample;

then measures accuracy on the training-split validation protocol (true labels, a short stream,
the int8 frozen part quantised by onnxruntime with calibration images from the labels part) for
every candidate that fits, and writes the best one: the int8 frozen ONNX, the trained-from-here
upper layers' ONNX, and a card (JSON). No fine-tune after pruning (PyTorch not used here) and no
C generation for the cut model yet: both are listed in the card's ``not_done``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .. import presets
from ..core.errors import InputError
from ..core.latent import LatentUpperHead
from ..core.layers import Conv2d, Linear
from ..export.latent_onnx import cut_names, split_model, upper_to_onnx
from ..extractor import FrozenExtractor, model_path
from ..storage import write_atomic
from . import tinyndc as exp
from .latent import _fresh, learning_macs, run_stream
from .protocol import forbid_test_split, load_images, train_parts

N_CLASSES = 10


def parse_bytes(text: str) -> int:
    """'256KiB', '1MiB', '300000' → bytes; InputError otherwise."""
    t = text.strip()
    for suffix, mult in (("KiB", 1024), ("MiB", 1024 ** 2), ("KB", 1000), ("MB", 1000 ** 2), ("B", 1)):
        if t.endswith(suffix):
            t, m = t[: -len(suffix)], mult
            break
    else:
        m = 1
    try:
        value = int(float(t) * m)
    except ValueError:
        raise InputError(f"size: expected e.g. 256KiB or 1MiB, got {text!r}") from None
    if value <= 0:
        raise InputError(f"size: must be positive, got {text!r}")
    return value


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
            flash += W.size + 8 * W.shape[0]            # int8 weights + int32 bias + fp32 scale per filter
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
    """MaxPool outputs (block ends) are the natural latent layers."""
    names = cut_names(model)
    return [n for n in names if "MaxPool" in n]


def main(args) -> int:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 150)
    ram, flash = parse_bytes(args.ram), parse_bytes(args.flash)
    model = model_path(args.model) if not Path(args.model).exists() else Path(args.model)
    if not model.is_file():
        raise InputError(f"--model: {model} not found")
    cuts = [args.cut] if args.cut else default_cuts(model)
    work = Path(args.out)
    work.mkdir(parents=True, exist_ok=True)
    ratios = tuple(float(r) for r in args.prune.split(","))
    rows: list[dict[str, Any]] = []
    with forbid_test_split():
        X, y = load_images(args.dataset, "train", args.data)
        calib = X[train_parts(y)["labels"]][::4].astype(np.float32)[:, None] / 255.0
        for cut, ratio, train_upper in [(c, r, t) for c in cuts for r in ratios for t in (True, False)]:
                row: dict[str, Any] = {"cut": cut, "prune": ratio, "train_upper": train_upper}
                pruned = prune_model(model, ratio, cut, work / f"cand_p{int(ratio * 100)}.onnx")
                split = split_model(pruned, cut, work)
                c = costs(split.lower_path, split, presets.LATENT["minibatch"], train_upper)
                n_replay = min((ram - c.ram_fixed) // (c.latent + 1), presets.LATENT["memory_size"])
                row.update(flash=c.flash, ram_fixed=c.ram_fixed, latent=c.latent, replay=int(max(n_replay, 0)),
                           ram=int(c.ram_fixed + max(n_replay, 0) * (c.latent + 1)),
                           frozen_macs=c.lower_macs, upper_macs=c.upper_macs)
                row["fits"] = bool(c.flash <= flash and n_replay >= args.min_replay)
                if row["fits"]:
                    from ..training.train_frozen import export_int8

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
                console.log(row)
    fits = [r for r in rows if r.get("accuracy") is not None]
    t = Table(title=f"design for RAM {ram:,} B, flash {flash:,} B — {args.dataset} training-split protocol")
    for col in ("cut", "prune", "train upper", "flash B", "RAM B", "replay", "frozen MACs", "upper MACs", "learn MACs/sample",
                "accuracy", "new classes", "fits"):
        t.add_column(col)
    for r in rows:
        t.add_row(r["cut"].split("/")[-2], f"{r['prune']:.2f}", "yes" if r["train_upper"] else "no", f"{r['flash']:,}", f"{r['ram']:,}", str(r["replay"]),
                  f"{r['frozen_macs']:,}", f"{r['upper_macs']:,}", f"{r.get('learning_macs', 0):,.0f}",
                  str(r.get("accuracy", "–")), str(r.get("accuracy_new", "–")), "yes" if r["fits"] else "no")
    console.print(t)
    card: dict[str, Any] = {"budget": {"ram": ram, "flash": flash}, "model": model.name, "dataset": args.dataset,
                            "candidates": rows, "not_done": ["fine-tune after pruning", "C generation of the cut model"]}
    if fits:
        best = max(fits, key=lambda r: (r["accuracy"], -r["flash"]))
        card["chosen"] = best
        split = split_model(prune_model(model, best["prune"], best["cut"], work / "chosen_full.onnx"), best["cut"], work)
        head = LatentUpperHead(split.latent_shape, _fresh(split), upper_lr_scale=1.0 if best["train_upper"] else 0.0)
        for c in range(N_CLASSES):
            head._new_class(c)
        (work / "chosen_upper.onnx").write_bytes(upper_to_onnx(head).SerializeToString())
        card["files"] = {"frozen_int8": best["int8_model"], "upper": str(work / "chosen_upper.onnx")}
        console.print(f"chosen: cut {best['cut']}, prune {best['prune']}, replay {best['replay']}, "
                      f"accuracy {best['accuracy']}%")
    else:
        console.print("[red]no candidate fits the budget[/]")
    write_atomic(work / "card.json", json.dumps(card, indent=1).encode())
    console.print(f"wrote {work / 'card.json'}")
    return 0 if fits else 1


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="frozen ONNX model (name or path)")
    p.add_argument("--ram", required=True, help="RAM budget, e.g. 256KiB")
    p.add_argument("--flash", required=True, help="flash budget, e.g. 1MiB")
    p.add_argument("--cut", default=None, help="one latent layer (default: every MaxPool output)")
    p.add_argument("--prune", default="0,0.25,0.5", help="structured-pruning ratios to try")
    p.add_argument("--dataset", default="fashion_mnist")
    p.add_argument("--data", default=None)
    p.add_argument("--stream", type=int, default=3000, help="validation stream length per candidate")
    p.add_argument("--min-replay", type=int, default=100, help="fewest replay patterns a candidate must hold")
    p.add_argument("--out", default="results/design", help="folder for the chosen model and its card")
