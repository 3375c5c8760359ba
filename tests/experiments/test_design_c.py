"""`tinycl design` writes the C of its int8 frozen part with the one generator (export/c_model.py):
a model cut after its last conv block has no Gemm / BatchNormalization, and its C compiles."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from tinycl_nodes.export import c_model
from tinycl_nodes.export.latent_onnx import cut_names, split_model
from tinycl_nodes.extractor import model_path
from tinycl_nodes.training.train_frozen import export_int8


@pytest.fixture(scope="module")
def cut_int8(tmp_path_factory):
    out = tmp_path_factory.mktemp("cut")
    full = model_path("mnist_0to5_fp32")
    cut = [n for n in cut_names(full) if "MaxPool" in n][-1]
    split = split_model(full, cut, out)
    int8 = out / "frozen.int8.onnx"
    calib = np.random.default_rng(0).integers(0, 256, (64, 1, 28, 28)).astype(np.float32) / 255.0
    export_int8(split.lower_path, int8, calib)
    return int8, split.latent_shape


def test_cut_model_parses_to_blocks_only_and_keeps_the_int8_weights(cut_int8):
    path, shape = cut_int8
    m = c_model.parse(path)
    assert len(m.blocks) == 3 and m.fc_w is None and m.bn_s is None
    g = onnx.load(str(path)).graph
    int8_convs = [numpy_helper.to_array(t) for t in g.initializer if numpy_helper.to_array(t).dtype == np.int8
                  and numpy_helper.to_array(t).ndim == 4]
    assert [b.w.shape for b in m.blocks] == [w.shape for w in int8_convs]
    for blk, w in zip(m.blocks, int8_convs):
        np.testing.assert_array_equal(blk.w, w)
    header, source = c_model.generate(m, path.name)
    assert "#define TINYCL_HAS_FC 0" in header and f"#define TINYCL_N_FEATURES {int(np.prod(shape))}" in header
    assert "tinycl_fc_w" not in header + source and "tinycl_b2_w" in source


def test_cut_model_c_compiles(cut_int8, tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    assert cc, "a C compiler is part of the build dependencies (make firmware-deps)"
    paths = c_model.export(cut_int8[0], tmp_path)
    res = subprocess.run([cc, "-std=c99", "-Wall", "-Werror", "-c", str(paths[1]), "-o", str(tmp_path / "m.o")],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    nm = subprocess.run(["nm", str(tmp_path / "m.o")], capture_output=True, text=True).stdout
    assert "tinycl_b2_mult" in nm and "tinycl_in_lut" in nm


def test_the_c_core_says_it_needs_the_whole_model_not_the_part_below_the_cut(cut_int8, tmp_path):
    """The design's c/ (the frozen part below the cut) given to the C core's forward failed with 'TINYCL_FC_IN_ZP
    undeclared' and more; it now says in one #error which model the firmware takes."""
    from pathlib import Path

    h, _ = c_model.export(cut_int8[0], tmp_path / "c")
    core = Path(__file__).resolve().parents[2] / "micro_ros_firmware" / "core"
    cc = shutil.which("cc") or shutil.which("gcc")
    res = subprocess.run([cc, "-std=c99", "-c", f"-I{h.parent}", f"-I{core / 'include'}", f"-I{core / 'src'}",
                          str(core / "src" / "tinycl_cnn.c"), "-o", str(tmp_path / "cnn.o")], capture_output=True,
                         text=True)
    assert res.returncode != 0
    first = next(ln for ln in res.stderr.splitlines() if "error" in ln)
    assert "#error" in first and "chosen_full.int8.onnx" in first, res.stderr[-2000:]


def test_a_graph_ending_inside_a_block_is_refused(tmp_path):
    full = model_path("mnist_0to5_fp32")
    conv = [n for n in cut_names(full) if "Conv" in n][1]
    split = split_model(full, conv, tmp_path)
    int8 = tmp_path / "bad.int8.onnx"
    export_int8(split.lower_path, int8, np.zeros((32, 1, 28, 28), np.float32))
    with pytest.raises(c_model.ExportError):
        c_model.parse(int8)


def test_pruned_whole_model_c_compiles_with_the_c_core(tmp_path):
    """A design whose upper layers stay frozen writes the C of the whole pruned int8 model: the
    C core's forward (micro_ros_firmware/core/src/tinycl_cnn.c) compiles against it."""
    from pathlib import Path

    from tinycl_nodes.experiments.design import prune_model

    full = model_path("mnist_0to5_fp32")
    cut = [n for n in cut_names(full) if "MaxPool" in n][-1]
    pruned = prune_model(full, 0.25, cut, tmp_path / "pruned.onnx")
    int8 = tmp_path / "pruned.int8.onnx"
    export_int8(pruned, int8, np.random.default_rng(1).integers(0, 256, (64, 1, 28, 28)).astype(np.float32) / 255.0)
    m = c_model.parse(int8)
    assert [b.w.shape[0] for b in m.blocks] == [24, 48, 128] and m.fc_w is not None   # 32, 64 filters −25%
    h, _ = c_model.export(int8, tmp_path / "c")
    core = Path(__file__).resolve().parents[2] / "micro_ros_firmware" / "core"
    cc = shutil.which("cc") or shutil.which("gcc")
    res = subprocess.run([cc, "-std=c99", "-c", f"-I{h.parent}", f"-I{core / 'include'}", f"-I{core / 'src'}",
                          str(core / "src" / "tinycl_cnn.c"), "-o", str(tmp_path / "cnn.o")], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
