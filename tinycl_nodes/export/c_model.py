"""Generate C source for the frozen int8 extractor from its QDQ ONNX model (TyBox-style codegen).

The model is the one ``training/train_frozen.py`` writes (``mnist_0to5_int8.onnx``):
``QuantizeLinear(image) → [Conv3x3(pad 1) + ReLU → MaxPool 2×2] × N → Flatten → Gemm →
BatchNormalization → QuantizeLinear → DequantizeLinear``, every tensor in QDQ form (int8 weights
with per-output-channel scales and zero point 0, int32 biases at scale ``x_scale·w_scale``, int8
activations with one scale and zero point each). A model cut after a conv block (the frozen part
``tinycl design`` chooses, ending ``MaxPool → QuantizeLinear → DequantizeLinear``) is read too:
it has no Gemm / BatchNormalization, ``TINYCL_HAS_FC`` is 0 and its features are the last
block's int8 output (``TINYCL_N_FEATURES = C·H·W``, ``TINYCL_FEAT_SCALE`` / ``_ZP`` its scale).

The generated code reproduces what onnxruntime (CPU EP, which fuses the QDQ pairs into
QLinearConv / QGemm) computes:

* accumulate ``Σ (x_q − x_zp)·w_q + bias_q`` in int32;
* requantise with the float32 multiplier ``(x_scale·w_scale[c]) / y_scale`` (computed here in
  float32, in that order, as onnxruntime does), clamp to ``[−128 − y_zp, 127 − y_zp]``, round half
  to even, add ``y_zp`` (ReLU is the clamp at ``y_zp = −128``);
* MaxPool on int8 values (it commutes with the monotone requantisation, so the C code pools the
  int32 accumulators and requantises once);
* the tail ``DQ → BatchNormalization → QuantizeLinear`` in float32 as ``x·s + b`` with
  ``s = γ·(1/sqrt(var + ε))``, ``b = β − mean·s`` and a division by the output scale.

The C kernels compute these sums in other forms (Winograd tiles for the blocks after the first: the filters are
written transformed, ``WINOGRAD_G2``); :func:`integer_reference` is the same arithmetic by the plain definition,
in numpy, that they must equal exactly. Every float is written as a C99 hex-float literal, so the C side uses the
bit-identical value. Usage: ``python -m tinycl_nodes.export.c_model [model.onnx] --out DIR`` (writes
``tinycl_model.h`` and ``tinycl_model.c``).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import TinyclError
from ..extractor import extractor_hash, model_card_of, model_path
from ..model_card import default_card
from ..preprocess import pixel_lut

# Winograd F(2×2, 3×3) (Lavin & Gray, 2016): a 2×2 output tile from its 4×4 input patch d and filter g is
# Aᵀ[(G g Gᵀ) ⊙ (Bᵀ d B)]A. G has halves; this is 2G, so the filters transform to integers (tinycl_cnn.c divides
# the tile by 4, exactly). Bᵀ and Aᵀ (entries 0, ±1) are written out in tinycl_cnn.c.
WINOGRAD_G2 = np.array([[2, 0, 0], [1, 1, 1], [1, -1, 1], [0, 0, 2]], np.int64)


def conv_runs(a: dict[str, Any]) -> bool:
    """Whether the generated C runs a Conv of attributes ``a``: 3x3, padding 1, stride 1, one group, no dilation
    (``tinycl design`` asks it of a float model before scoring its candidates)."""
    return (list(a.get("kernel_shape", [])) == [3, 3] and list(a.get("pads", [0] * 4)) == [1] * 4
            and list(a.get("strides", [1, 1])) == [1, 1] and a.get("group", 1) == 1
            and list(a.get("dilations", [1, 1])) == [1, 1])


def pool_runs(a: dict[str, Any]) -> bool:
    """Whether the generated C runs a MaxPool of attributes ``a``: 2x2, stride 2, no padding."""
    return list(a.get("kernel_shape", [])) == [2, 2] and list(a.get("strides", [])) == [2, 2] and \
        not any(a.get("pads", [0] * 4))


def winograd_block(cin: int, cout: int) -> bool:
    """Whether the generated C runs this conv block as Winograd tiles (tinycl_cnn.c conv_block: input channels in
    groups of 4, output channels in pairs); else (the first block, one channel) direct, with int8 weights."""
    return cin % 4 == 0 and cout % 2 == 0


def conv_flash_bytes(cin: int, cout: int) -> int:
    """Flash the generated C holds for a 3×3 conv block: its weights (Winograd: 16 int16 per channel pair, 3.6×
    the int8 filters; else 9 int8), an int32 bias and a float32 multiplier per output channel."""
    return (16 * 2 if winograd_block(cin, cout) else 9) * cin * cout + 8 * cout


class ExportError(TinyclError):
    """The ONNX model is not a graph this exporter knows how to turn into C: one line, as every TinyclError (the CLI
    prints it; as a plain ValueError it was a traceback at the end of ``tinycl design``). Still a ValueError."""


@dataclass
class ConvBlock:
    """Conv3x3 (pad 1, stride 1) + ReLU (by saturation) + MaxPool 2×2 stride 2, all int8."""

    w: np.ndarray            # int8 (Cout, Cin, 3, 3)
    bias: np.ndarray         # int32 (Cout,)
    mult: np.ndarray         # float32 (Cout,) requantisation multiplier
    in_zp: int
    out_zp: int
    in_hw: tuple[int, int]
    out_scale: np.float32 = np.float32(1)   # the pooled int8 output's scale (the last block's: the board's latent cut)


@dataclass
class Model:
    in_lut: np.ndarray            # int8 (256,) pixel byte → quantised input
    in_shape: tuple[int, int, int]
    in_zp: int
    blocks: list[ConvBlock] = field(default_factory=list)
    fc_w: np.ndarray | None = None     # int8 (F, K)
    fc_bias: np.ndarray | None = None  # int32 (F,)
    fc_mult: np.ndarray | None = None  # float32 (F,)
    fc_in_zp: int = 0
    fc_out_zp: int = 0
    fc_out_scale: np.float32 = np.float32(1)
    bn_s: np.ndarray | None = None     # float32 (F,)
    bn_b: np.ndarray | None = None     # float32 (F,)
    out_scale: np.float32 = np.float32(1)
    out_zp: int = 0
    sha256: str = ""


def _scalar(a: np.ndarray) -> float | int:
    a = np.asarray(a)
    if a.size != 1:
        raise ExportError(f"expected a per-tensor value, got shape {a.shape}")
    return a.reshape(()).item()


def parse(path: str | Path) -> Model:
    """Read the QDQ graph and return the integer model the C code runs."""
    import onnx
    from onnx import numpy_helper

    from ..model_tools import load_model

    path = Path(path)
    g = load_model(path).graph          # a missing or unreadable file: one line (ModelToolError)
    if not any(n.op_type == "QuantizeLinear" for n in g.node):
        raise ExportError(f"{path.name}: a float model; the C generator takes its int8 QDQ model (`make "
                          f"train-frozen` writes *_int8.onnx beside it)")
    init = {t.name: numpy_helper.to_array(t) for t in g.initializer}
    prod = {o: n for n in g.node for o in n.output}
    attrs = {id(n): {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute} for n in g.node}

    def dq_const(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(quantised array, scale, zero point) of a DequantizeLinear of an initializer."""
        n = prod.get(name)
        if n is None or n.op_type != "DequantizeLinear" or n.input[0] not in init:
            raise ExportError(f"{name}: expected DequantizeLinear of a constant")
        zp = init[n.input[2]] if len(n.input) > 2 else np.zeros(1, np.int8)
        return init[n.input[0]], init[n.input[1]].astype(np.float32), zp

    def act_qparams(name: str) -> tuple[np.float32, int]:
        """(scale, zp) of the QDQ pair an activation ``name`` (a DQ output) went through."""
        n = prod.get(name)
        if n is None or n.op_type != "DequantizeLinear":
            raise ExportError(f"{name}: activation is not in QDQ form")
        return np.float32(_scalar(init[n.input[1]])), int(_scalar(init[n.input[2]]))

    def consumer_q(name: str) -> tuple[np.float32, int, str]:
        """The QuantizeLinear consuming ``name`` → (scale, zp, name of the matching DQ output)."""
        qs = [n for n in g.node if n.op_type == "QuantizeLinear" and n.input[0] == name]
        if len(qs) != 1:
            raise ExportError(f"{name}: expected exactly one QuantizeLinear consumer")
        q = qs[0]
        dqs = [n for n in g.node if n.op_type == "DequantizeLinear" and n.input[0] == q.output[0]]
        if len(dqs) != 1:
            raise ExportError(f"{q.output[0]}: expected exactly one DequantizeLinear consumer")
        return np.float32(_scalar(init[q.input[1]])), int(_scalar(init[q.input[2]])), dqs[0].output[0]

    if len(g.input) != 1 or len(g.output) != 1:
        raise ExportError("expected one input and one output")
    dims = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim][1:]
    if len(dims) != 3 or dims[0] != 1:
        raise ExportError(f"expected a (n, 1, H, W) image input, got {dims}")
    in_scale, in_zp, cur = consumer_q(g.input[0].name)
    card, _ = model_card_of(path)
    pre = (card.preprocessing if card is not None else None) or default_card(tuple(dims)).preprocessing
    if pre is None or pre.channels != 1:
        raise ExportError(f"the model card of {path.name} does not describe a 1-channel image input")
    px = pixel_lut(pre)[:, 0]   # what the one preprocessing function makes of each pixel byte
    lut = np.clip(np.rint(px / in_scale) + in_zp, -128, 127).astype(np.int8)
    model = Model(in_lut=lut, in_shape=(dims[0], dims[1], dims[2]), in_zp=in_zp, sha256=extractor_hash(path))
    hw = (dims[1], dims[2])
    x_scale, x_zp = in_scale, in_zp

    def consumers(name: str) -> list:
        return [n for n in g.node if name in n.input]

    while True:
        if model.blocks and model.fc_w is None and cur == g.output[0].name:   # a model cut after a block
            model.out_scale, model.out_zp = x_scale, x_zp
            break
        nxt = consumers(cur)
        if len(nxt) != 1:
            raise ExportError(f"{cur}: expected one consumer")
        node = nxt[0]
        a = attrs[id(node)]
        if node.op_type == "Conv":
            if not conv_runs(a):
                raise ExportError(f"{node.name}: only 3x3 pad-1 stride-1 convolutions are supported")
            w, ws, wzp = dq_const(node.input[1])
            b, bs, _ = dq_const(node.input[2])
            if np.any(wzp != 0) or w.dtype != np.int8 or b.dtype != np.int32:
                raise ExportError(f"{node.name}: expected symmetric int8 weights and int32 bias")
            ws = np.broadcast_to(ws, (w.shape[0],)).astype(np.float32)
            if not np.allclose(bs, x_scale * ws, rtol=1e-6):
                raise ExportError(f"{node.name}: bias scale is not x_scale·w_scale")
            y_scale, y_zp, cur = consumer_q(node.output[0])
            if y_zp != -128:
                raise ExportError(f"{node.name}: expected a ReLU output (zero point −128), got {y_zp}")
            mult = ((x_scale * ws).astype(np.float32) / y_scale).astype(np.float32)
            # MaxPool 2×2 on the int8 tensor, re-quantised with the same parameters.
            pool = consumers(cur)
            if len(pool) != 1 or pool[0].op_type != "MaxPool":
                raise ExportError(f"{node.name}: expected MaxPool after the convolution")
            if not pool_runs(attrs[id(pool[0])]):
                raise ExportError("only 2x2 stride-2 max pooling is supported")
            ps, pzp, cur = consumer_q(pool[0].output[0])
            if ps != y_scale or pzp != y_zp:
                raise ExportError("MaxPool must keep its input's quantisation")
            model.blocks.append(ConvBlock(w.astype(np.int8), b.astype(np.int32), mult, x_zp, y_zp, hw, y_scale))
            hw = (hw[0] // 2, hw[1] // 2)
            x_scale, x_zp = y_scale, y_zp
        elif node.op_type == "Flatten":
            s, zp, cur = consumer_q(node.output[0])
            if s != x_scale or zp != x_zp:
                raise ExportError("Flatten must keep its input's quantisation")
        elif node.op_type == "Gemm":
            if a.get("transB") != 1 or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
                raise ExportError("Gemm: expected transB=1, alpha=beta=1")
            w, ws, wzp = dq_const(node.input[1])
            b, bs, _ = dq_const(node.input[2])
            if np.any(wzp != 0) or w.dtype != np.int8 or b.dtype != np.int32:
                raise ExportError("Gemm: expected symmetric int8 weights and int32 bias")
            ws = np.broadcast_to(ws, (w.shape[0],)).astype(np.float32)
            y_scale, y_zp, cur = consumer_q(node.output[0])
            model.fc_w, model.fc_bias = w.astype(np.int8), b.astype(np.int32)
            model.fc_mult = ((x_scale * ws).astype(np.float32) / y_scale).astype(np.float32)
            model.fc_in_zp, model.fc_out_zp, model.fc_out_scale = x_zp, y_zp, y_scale
            x_scale, x_zp = y_scale, y_zp
        elif node.op_type == "BatchNormalization":
            gq, gs, gzp = dq_const(node.input[1])
            bq, bs, bzp = dq_const(node.input[2])
            gamma = ((gq.astype(np.int32) - gzp.astype(np.int32)).astype(np.float32) * gs).astype(np.float32)
            beta = ((bq.astype(np.int64) - bzp.astype(np.int64)).astype(np.float32) * bs).astype(np.float32)
            mean = init[node.input[3]].astype(np.float32)
            var = init[node.input[4]].astype(np.float32)
            eps = np.float32(a.get("epsilon", 1e-5))
            inv_std = (np.float32(1) / np.sqrt(var + eps)).astype(np.float32)
            model.bn_s = (inv_std * gamma).astype(np.float32)
            model.bn_b = (beta - mean * model.bn_s).astype(np.float32)
            model.out_scale, model.out_zp, cur = consumer_q(node.output[0])
            if cur != g.output[0].name:
                raise ExportError("expected the graph to end after BatchNormalization's QDQ")
            break
        else:
            raise ExportError(f"unsupported operator {node.op_type} ({node.name})")
    if not model.blocks or (model.fc_w is None) != (model.bn_s is None):
        raise ExportError("expected conv blocks, then a Gemm and a BatchNormalization or nothing (a cut model)")
    for blk in model.blocks:
        if np.any(blk.mult <= 0):
            raise ExportError("requantisation multipliers must be positive (max-pool folding)")
    c_last = model.blocks[-1].w.shape[0]
    if model.fc_w is not None and model.fc_w.shape[1] != c_last * hw[0] * hw[1]:
        raise ExportError(f"Gemm expects {model.fc_w.shape[1]} inputs, conv stack gives {c_last * hw[0] * hw[1]}")
    return model


# --- the generated code's arithmetic, in numpy ---------------------------------------------------------------
def _quantize(v: np.ndarray, zp: int) -> np.ndarray:
    """tinycl_cnn.c ``quantize``: float32 clamped to the zero-point-shifted range, rounded half to even, + zp."""
    v = np.clip(v.astype(np.float32), np.float32(-128 - zp), np.float32(127 - zp))
    return (np.rint(v).astype(np.int32) + zp).astype(np.int8)


def integer_reference(model: Model, pixels: np.ndarray) -> np.ndarray:
    """The int8 features the generated C computes for images ``pixels`` (n, H, W) uint8, by the plain definition:
    direct 3×3 convolutions in int64 (no Winograd, no packing), 2×2 max-pool of the accumulators, float32
    requantisation. The C kernels reorder and transform these sums; this says what they must equal, exactly."""
    from numpy.lib.stride_tricks import sliding_window_view

    x = model.in_lut[np.asarray(pixels, np.uint8)][:, None]              # (n, 1, H, W) int8
    for blk in model.blocks:
        n, _, h, w = x.shape
        d = np.pad(x.astype(np.int64) - blk.in_zp, ((0, 0), (0, 0), (1, 1), (1, 1)))
        patches = sliding_window_view(d, (3, 3), axis=(2, 3))            # (n, cin, h, w, 3, 3)
        acc = np.einsum("nchwab,ocab->nohw", patches, blk.w.astype(np.int64)) + blk.bias.astype(np.int64)[:, None, None]
        ph, pw = h // 2, w // 2
        pooled = acc[:, :, :2 * ph, :2 * pw].reshape(n, -1, ph, 2, pw, 2).max(axis=(3, 5))
        x = _quantize(pooled.astype(np.float32) * blk.mult[:, None, None], blk.out_zp)
    flat = x.reshape(x.shape[0], -1)
    if model.fc_w is None:
        return flat
    acc = (flat.astype(np.int64) - model.fc_in_zp) @ model.fc_w.astype(np.int64).T + model.fc_bias
    q = _quantize(acc.astype(np.float32) * model.fc_mult, model.fc_out_zp)
    y = (q.astype(np.int32) - model.fc_out_zp).astype(np.float32) * np.float32(model.fc_out_scale)
    return _quantize((y * model.bn_s + model.bn_b) / np.float32(model.out_scale), model.out_zp)


# --- C emission ---------------------------------------------------------------------------------
def _hexf(v: float) -> str:
    return float(np.float32(v)).hex() + "f"


def _arr(ctype: str, name: str, values: np.ndarray, fmt=str, per_line: int = 16) -> str:
    flat = np.asarray(values).ravel()
    items = [fmt(v) for v in flat.tolist()]
    lines = [", ".join(items[i:i + per_line]) for i in range(0, len(items), per_line)]
    body = ",\n    ".join(lines)
    return f"const {ctype} {name}[{flat.size}] = {{\n    {body}\n}};\n"


def generate(model: Model, source: str = "") -> tuple[str, str]:
    """Return (header, source) text of the generated model."""
    nb = len(model.blocks)
    last = model.blocks[-1]
    cut_features = last.w.shape[0] * (last.in_hw[0] // 2) * (last.in_hw[1] // 2)
    F, K = model.fc_w.shape if model.fc_w is not None else (cut_features, cut_features)
    h = [f"/* Generated by tinycl_nodes.export.c_model from {source or 'an ONNX model'}: do not edit.",
         f" * ONNX sha256 {model.sha256} */",
         "#ifndef TINYCL_MODEL_H", "#define TINYCL_MODEL_H", "#include <stdint.h>", "",
         f'#define TINYCL_MODEL_SHA256 "{model.sha256}"',
         f"#define TINYCL_IN_H {model.in_shape[1]}", f"#define TINYCL_IN_W {model.in_shape[2]}",
         f"#define TINYCL_N_BLOCKS {nb}", f"#define TINYCL_HAS_FC {int(model.fc_w is not None)}",
         f"#define TINYCL_FC_IN {K}", f"#define TINYCL_N_FEATURES {F}",
         f"#define TINYCL_FEAT_ZP ({model.out_zp})", f"#define TINYCL_FEAT_SCALE ({_hexf(model.out_scale)})",
         "/* the last conv block's pooled int8 output (NCHW), the latent cut tinycl_features_cut_q exposes */",
         f"#define TINYCL_CUT_C {last.w.shape[0]}", f"#define TINYCL_CUT_H {last.in_hw[0] // 2}",
         f"#define TINYCL_CUT_W {last.in_hw[1] // 2}", f"#define TINYCL_CUT_F {cut_features}",
         f"#define TINYCL_CUT_ZP ({last.out_zp})", f"#define TINYCL_CUT_SCALE ({_hexf(last.out_scale)})"]
    s = [f"/* Generated by tinycl_nodes.export.c_model from {source or 'an ONNX model'}: do not edit. */",
         '#include "tinycl_model.h"', "",
         _arr("int8_t", "tinycl_in_lut", model.in_lut)]
    cin = 1
    for i, blk in enumerate(model.blocks):
        co = blk.w.shape[0]
        # [co][ky][kx][ci]: the reduction over input channels is contiguous (SIMD over ci in tinycl_cnn.c)
        w = np.ascontiguousarray(blk.w.transpose(0, 2, 3, 1))
        ctype = "int8_t"
        if winograd_block(cin, co):
            # Winograd F(2×2, 3×3) (tinycl_cnn.c conv_block): the filters transformed, U = G' g G'ᵀ (16 values per
            # channel pair, 4× the textbook U so that they are integers; |U| ≤ 9·128, int16), each group of 4
            # input channels as (c0, c2, c1, c3) like the input (one LDRD = two SMLAD operands), output channels in
            # pairs whose groups alternate: [co/2][16][ci/4][co%2][4] (tinycl_cnn.c run2x2)
            u = np.einsum("ia,ocab,jb->oijc", WINOGRAD_G2, blk.w.astype(np.int64), WINOGRAD_G2).reshape(co, 16, cin)
            w = u.reshape(co // 2, 2, 16, cin // 4, 4)[..., [0, 2, 1, 3]].transpose(0, 2, 3, 1, 4)
            w, ctype = np.ascontiguousarray(w).astype(np.int16), "int16_t"
        h += [f"#define TINYCL_B{i}_CIN {cin}", f"#define TINYCL_B{i}_COUT {co}",
              f"#define TINYCL_B{i}_H {blk.in_hw[0]}", f"#define TINYCL_B{i}_W {blk.in_hw[1]}",
              f"#define TINYCL_B{i}_IN_ZP ({blk.in_zp})", f"#define TINYCL_B{i}_OUT_ZP ({blk.out_zp})",
              f"extern const {ctype} tinycl_b{i}_w[{w.size}];",
              f"extern const int32_t tinycl_b{i}_bias[{co}];",
              f"extern const float tinycl_b{i}_mult[{co}];"]
        s += [_arr(ctype, f"tinycl_b{i}_w", w), _arr("int32_t", f"tinycl_b{i}_bias", blk.bias, per_line=8),
              _arr("float", f"tinycl_b{i}_mult", blk.mult, _hexf, per_line=4)]
        cin = co
    h.append("extern const int8_t tinycl_in_lut[256];")
    if model.fc_w is None:   # a cut model: the blocks are all there is
        return "\n".join(h + ["", "#endif /* TINYCL_MODEL_H */", ""]), "\n".join(s)
    h += [f"#define TINYCL_FC_IN_ZP ({model.fc_in_zp})", f"#define TINYCL_FC_OUT_ZP ({model.fc_out_zp})",
          f"#define TINYCL_FC_OUT_SCALE ({_hexf(model.fc_out_scale)})",
          f"extern const int8_t tinycl_fc_w[{F * K}];", f"extern const int32_t tinycl_fc_bias[{F}];",
          f"extern const float tinycl_fc_mult[{F}];", f"extern const float tinycl_bn_s[{F}];",
          f"extern const float tinycl_bn_b[{F}];", "", "#endif /* TINYCL_MODEL_H */", ""]
    s += [_arr("int8_t", "tinycl_fc_w", model.fc_w), _arr("int32_t", "tinycl_fc_bias", model.fc_bias, per_line=8),
          _arr("float", "tinycl_fc_mult", model.fc_mult, _hexf, per_line=4),
          _arr("float", "tinycl_bn_s", model.bn_s, _hexf, per_line=4),
          _arr("float", "tinycl_bn_b", model.bn_b, _hexf, per_line=4)]
    return "\n".join(h), "\n".join(s)


def export(model_file: str | Path, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``tinycl_model.h`` / ``tinycl_model.c`` for ``model_file`` into ``out_dir`` (only if changed)."""
    header, source = generate(parse(model_file), Path(model_file).name)
    return write_sources(out_dir, "tinycl_model", header, source)


def write_sources(out_dir: str | Path, stem: str, header: str, source: str) -> tuple[Path, Path]:
    """``<stem>.h`` / ``<stem>.c`` in ``out_dir``, rewritten only when changed (no needless rebuilds), else only
    touched: make compares them with the inputs of the rule that made them (presets.py, say), and an input edited
    without changing them would otherwise run the generator again at every build (4 s at each board start)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = (out / f"{stem}.h", out / f"{stem}.c")
    for p, text in zip(paths, (header, source)):
        if not p.exists() or p.read_text() != text:
            p.write_text(text)
        else:
            p.touch()
    return paths


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", nargs="?", default=str(model_path("mnist_0to5_int8")))
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    try:
        paths = export(model_path(args.model), args.out)
    except (ExportError, TinyclError) as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
