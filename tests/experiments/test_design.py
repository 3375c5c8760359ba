"""`tinycl design` end to end, as a firmware engineer runs it: the candidates are scored on the model card's own
dataset, the chosen model and its C are written, and a budget that nothing fits leaves no earlier choice behind
and fine-tunes nothing."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from tinycl_nodes.cli import main
from tinycl_nodes.experiments import design

SMALL = ["--cut", "/features/features.11/MaxPool", "--prune", "0,0.5", "--stream", "300"]


def card_of(out) -> dict:
    return json.loads((out / "card.json").read_text())


def test_design_scores_on_the_cards_dataset_then_a_budget_nothing_fits_clears_the_choice(tmp_path, data_dir,
                                                                                          capsys, caplog):
    out = tmp_path / "design"
    args = ["design", "--model", "mnist_0to5_trainsplit_fp32", "--ram", "256KiB", "--flash", "1MiB",
            "--data", str(data_dir), "--out", str(out), "--finetune-epochs", "0", *SMALL]
    assert main(args) == 0
    card = card_of(out)
    assert card["dataset"] == "mnist"               # the card's, not Fashion-MNIST
    assert "optimistic" not in capsys.readouterr().out   # a backbone-part model: no note
    chosen = card["chosen"]
    assert chosen["fits"] and chosen["accuracy"] > 80 and chosen["ram"] <= 256 * 1024
    for name in design.CHOSEN:
        assert (out / name).exists(), name
    assert (out / "c" / "tinycl_model.h").is_file()
    # onnxruntime's per-tensor fallback for the BatchNormalization weight is not a warning on the user's terminal
    assert not [r for r in caplog.records if "out-of-range for weight" in r.getMessage()]

    assert main([*args[:3], "--ram", "1KiB", *args[5:]]) == 1        # nothing fits 1 KiB of RAM
    card = card_of(out)
    assert "chosen" not in card and not any(r["fits"] for r in card["candidates"])
    assert card["budget"]["ram"] == 1024
    for name in design.CHOSEN:                     # the 256 KiB choice is gone: nothing here to flash by mistake
        assert not (out / name).exists(), name


def test_a_model_trained_on_the_whole_split_gets_a_note_and_a_misfit_is_not_fine_tuned(tmp_path, data_dir,
                                                                                       monkeypatch, capsys):
    tuned = []
    monkeypatch.setattr(design, "torch_available", lambda: True)
    monkeypatch.setattr(design, "finetune", lambda *a, **k: tuned.append(a) or pytest.fail("fine-tuned a misfit"))
    assert main(["design", "--model", "mnist_0to5_fp32", "--ram", "1KiB", "--flash", "1MiB", "--data",
                 str(data_dir), "--out", str(tmp_path), "--finetune-epochs", "0,1", *SMALL]) == 1
    out = capsys.readouterr().out
    text = " ".join(out.split())
    assert "trained on the whole mnist training split" in text and "optimistic" in text
    # the table is the output: no candidate printed as a dict before it (rich's repr of a row, one line per key)
    assert "'cut':" not in out and "{" not in out, out
    assert "design for RAM 1,024 B, flash 1,048,576 B" in text and text.count("no candidate fits") == 1, out
    rows = card_of(tmp_path)["candidates"]
    assert {(r["prune"], r["finetune_epochs"]) for r in rows} == {(0.0, 0), (0.5, 0), (0.5, 1)}
    assert tuned == [] and all(r["finetune"] is None for r in rows)


def test_a_model_whose_card_names_no_dataset_needs_dataset(tmp_path, data_dir, capsys):
    import shutil

    from tinycl_nodes.extractor import model_path

    model = tmp_path / "m.onnx"
    shutil.copy(model_path("mnist_0to5_fp32"), model)           # no card beside it
    assert main(["design", "--model", str(model), "--ram", "256KiB", "--flash", "1MiB", "--data", str(data_dir),
                 "--out", str(tmp_path / "o"), *SMALL]) == 2
    assert "--dataset: m.onnx's card names no dataset" in capsys.readouterr().err


def test_a_pruned_candidate_is_fine_tuned_by_pytorch_and_wins_back_its_accuracy(tmp_path, data_dir, capsys):
    """TyBox's short fine-tune after pruning, run by PyTorch (``make test`` installs it): half the filters pruned
    by L1 norm cost about 20 points on the validation stream, one epoch of fine-tuning wins most of them back."""
    assert main(["design", "--model", "mnist_0to5_trainsplit_fp32", "--ram", "256KiB", "--flash", "1MiB",
                 "--data", str(data_dir), "--out", str(tmp_path), "--cut", "/features/features.11/MaxPool",
                 "--prune", "0.5", "--finetune-epochs", "0,1", "--stream", "300"]) == 0
    scored = {r["finetune_epochs"]: r for r in card_of(tmp_path)["candidates"] if "accuracy" in r}
    assert set(scored) == {0, 1}, scored
    tuned, pruned = scored[1], scored[0]
    assert tuned["finetune"]["epochs"] == 1 and tuned["finetune"]["loss_last"] < tuned["finetune"]["loss_first"] / 2
    assert tuned["accuracy"] > pruned["accuracy"] + 5, (pruned["accuracy"], tuned["accuracy"])
    assert card_of(tmp_path)["chosen"]["finetune_epochs"] == 1


def test_a_model_the_design_cannot_take_is_one_line_and_writes_nothing(tmp_path, capsys):
    """A user's own backbone (a MobileNet-style PyTorch export) and an int8 model: one line saying what the design
    takes. (Until 2026-12-04 the first printed an empty table and "no candidate fits the budget", the second failed
    deep in a split with "QuantizeLinear above the cut is not supported".)"""
    from tests.test_pytorch_models import backbone, export

    mobile = tmp_path / "mobile.onnx"
    export(backbone(), mobile, "torchscript", False)
    for model, problem in ((str(mobile), "this one has operators Add, GlobalAveragePool, HardSigmoid, HardSwish, "
                                         "Mul, ReduceMean; input 3x64x80; no max-pool block end to cut at"),
                           ("mnist_0to5_int8", "an int8 model; give its fp32 model")):
        assert main(["design", "--model", model, "--ram", "256KiB", "--flash", "1MiB", "--dataset", "mnist",
                     "--out", str(tmp_path / "out"), *SMALL]) == 2
        err = capsys.readouterr().err.strip()
        assert problem in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_a_convolution_or_cut_the_c_generator_cannot_run_is_refused_before_scoring(tmp_path, capsys):
    """A stride-2 or unpadded convolution, or a cut inside a block, scored every candidate and then ended in the C
    generator's traceback ("only 3x3 pad-1 stride-1 convolutions", "expected a ReLU output")."""
    import onnx
    from onnx import helper

    from tinycl_nodes.extractor import model_path

    unpadded = onnx.load(str(model_path("mnist_0to5_trainsplit_fp32")))
    conv = next(n for n in unpadded.graph.node if n.op_type == "Conv")
    for a in conv.attribute:
        if a.name == "pads":
            a.CopyFrom(helper.make_attribute("pads", [0, 0, 0, 0]))
    onnx.save(unpadded, str(tmp_path / "unpadded.onnx"))
    for model, cut, problem in (
            (str(tmp_path / "unpadded.onnx"), SMALL[1],
             f"convolution {conv.name} is not 3x3 with stride 1 and padding 1"),
            ("mnist_0to5_trainsplit_fp32", "/features/features.4/Conv",
             "--cut /features/features.4/Conv: the design cuts at the end of a block, a max-pool's output "
             "(/features/features.3/MaxPool, /features/features.7/MaxPool, /features/features.11/MaxPool)")):
        assert main(["design", "--model", model, "--ram", "256KiB", "--flash", "1MiB", "--dataset", "mnist",
                     "--out", str(tmp_path / "out"), "--cut", cut, *SMALL[2:]]) == 2
        err = capsys.readouterr().err.strip()
        assert problem in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def exported(path, names=lambda op, i: f"/net/{op}_{i}/{op}", input_name: str = "image", batch: int | str = "n",
             bn: bool = True, opset: int = 17):
    """A designable model as another exporter writes it, built with onnx.helper: three blocks of 3x3 convolution,
    ReLU and 2x2 max-pool, then Flatten, Gemm and (``bn``) BatchNormalization; 1x28x28 input named ``input_name``,
    batch axis ``batch``, node ``names(op, i)`` ("" for none); a card beside it naming MNIST. Returns the path."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)

    def weight(name: str, shape: tuple[int, ...]) -> onnx.TensorProto:
        return numpy_helper.from_array((rng.standard_normal(shape) * np.sqrt(2 / np.prod(shape[1:])))
                                       .astype(np.float32), name)

    def const(name: str, value: float, n: int) -> onnx.TensorProto:
        return numpy_helper.from_array(np.full(n, value, np.float32), name)

    nodes, inits, x, c, i = [], [], input_name, 1, 0
    for blk, co in enumerate([8, 16, 16]):
        inits += [weight(f"w{blk}", (co, c, 3, 3)), const(f"b{blk}", 0.0, co)]
        for op, kw in (("Conv", {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}), ("Relu", {}),
                       ("MaxPool", {"kernel_shape": [2, 2], "strides": [2, 2]})):
            ins = [x, f"w{blk}", f"b{blk}"] if op == "Conv" else [x]
            nodes.append(helper.make_node(op, ins, [f"t{i}"], name=names(op, i), **kw))
            x, i = f"t{i}", i + 1
        c = co
    nodes.append(helper.make_node("Flatten", [x], [f"t{i}"], axis=1, name=names("Flatten", i)))
    inits += [weight("wf", (32, 16 * 3 * 3)), const("bf", 0.0, 32)]
    nodes.append(helper.make_node("Gemm", [f"t{i}", "wf", "bf"], ["gemm" if bn else "features"], transB=1,
                                  name=names("Gemm", i + 1)))
    if bn:
        inits += [const("g", 1.0, 32), const("beta", 0.0, 32), const("mean", 0.0, 32), const("var", 1.0, 32)]
        nodes.append(helper.make_node("BatchNormalization", ["gemm", "g", "beta", "mean", "var"], ["features"],
                                      name=names("BatchNormalization", i + 2)))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info(input_name, TensorProto.FLOAT,
                                                                        [batch, 1, 28, 28])],
                              [helper.make_tensor_value_info("features", TensorProto.FLOAT, [batch, 32])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 7
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    path.with_suffix(".json").write_text(json.dumps({"dataset": "mnist",
                                                     "preprocessing": {"size": [28, 28], "color": "gray"}}))
    return path


#: a design of one cut, unpruned, on a short stream: two candidates (upper layers trained or frozen), seconds
QUICK = ["--ram", "256KiB", "--flash", "1MiB", "--prune", "0", "--finetune-epochs", "0", "--stream", "300",
         "--min-replay", "10"]


@pytest.mark.parametrize("kind, build, cut", [
    ("input named input", dict(input_name="input"), "/net/MaxPool_8/MaxPool"),
    ("a fixed batch of 1", dict(batch=1), "/net/MaxPool_8/MaxPool"),
    ("names without /", dict(names=lambda op, i: f"{op}_{i}", opset=13), "MaxPool_8"),
])
def test_a_pytorch_export_is_designed_whatever_its_input_name_batch_or_node_names(tmp_path, data_dir, kind, build,
                                                                                  cut):
    """PyTorch names the input ``input``, ``input.1`` or ``x``, may fix the batch at 1, and (1.x) names nodes
    ``MaxPool_5``: the design failed on each, after its checks, in onnxruntime's quantizer ("Required inputs
    (['input']) are missing from input feed (['image'])", "Got: 32 Expected: 1") or in its table (IndexError)."""
    model = exported(tmp_path / "m.onnx", **build)
    out = tmp_path / "out"
    assert main(["design", "--model", str(model), "--data", str(data_dir), "--out", str(out), "--cut", cut,
                 *QUICK]) == 0, kind
    chosen = card_of(out)["chosen"]
    assert chosen["cut"] == cut and chosen["accuracy"] > 0
    assert (out / "c" / "tinycl_model.h").is_file()


def test_the_cuts_are_the_max_pools_whatever_their_names_and_an_unnamed_one_is_cut_by_its_output(tmp_path, data_dir):
    """The cuts were the nodes whose name holds "MaxPool": a model naming them ``maxpool2`` or not at all had none,
    and every budget, 1 GiB too, ended in "no candidate fits the budget"."""
    plain = exported(tmp_path / "plain.onnx", names=lambda op, i: f"{op.lower()}{i}")
    unnamed = exported(tmp_path / "unnamed.onnx", names=lambda op, i: "")
    assert design.default_cuts(plain) == ["maxpool2", "maxpool5", "maxpool8"]
    assert design.default_cuts(unnamed) == ["t2", "t5", "t8"]      # their output tensors
    out = tmp_path / "out"
    assert main(["design", "--model", str(unnamed), "--data", str(data_dir), "--out", str(out), "--cut", "t8",
                 *QUICK]) == 0
    assert card_of(out)["chosen"]["cut"] == "t8" and (out / "c" / "tinycl_model.h").is_file()


def test_a_model_without_its_batchnorm_is_refused_up_front(tmp_path, capsys):
    """A Gemm with no BatchNormalization after it scored every candidate, then failed in the C generator
    ("features: expected one consumer")."""
    model = exported(tmp_path / "m.onnx", bn=False)
    assert main(["design", "--model", str(model), "--out", str(tmp_path / "out"), "--cut", "/net/MaxPool_8/MaxPool",
                 *QUICK]) == 2
    err = capsys.readouterr().err.strip()
    assert "this one has Flatten, Gemm after its last max-pool, not Flatten, Gemm, BatchNormalization" in err, err
    assert len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_a_run_that_fails_or_is_stopped_leaves_the_previous_choice_as_it_was(tmp_path, data_dir, monkeypatch,
                                                                             capsys):
    """The C generator's refusal (ExportError) was a traceback, and the folder kept the last run's card.json beside
    this run's chosen_upper.onnx and c/: a card naming files it did not describe. Then a run cleared the previous
    choice at its start, so one that failed, or was stopped with Ctrl-C while scoring, left no choice at all. Now a
    run works in a folder of its own and replaces the previous choice only with its result."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from tinycl_nodes.export import c_model

    model = exported(tmp_path / "m.onnx")
    out = tmp_path / "out"
    args = ["design", "--model", str(model), "--data", str(data_dir), "--out", str(out), "--cut",
            "/net/MaxPool_8/MaxPool", *QUICK]
    out.mkdir()
    live, dead = out / f"{design.STAGE_PREFIX}{os.getpid()}-a", out / f"{design.STAGE_PREFIX}999999999-b"
    live.mkdir(), dead.mkdir()                      # a run going on in the same --out, and one that was killed
    assert main(args) == 0                          # the previous choice
    assert live.is_dir() and not dead.exists(), "another run's folder is left to it"
    live.rmdir()
    previous = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert "card.json" in previous and "c/tinycl_model.h" in previous
    assert json.loads(previous["card.json"])["files"]["upper"] == str(out / design.UPPER), "the card names out's files"

    def refuse(model_file, out_dir):
        raise c_model.ExportError("features: expected one consumer")

    with monkeypatch.context() as m:
        m.setattr(c_model, "export", refuse)
        assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err == "error: features: expected one consumer", err

    def unchanged() -> None:
        now = {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        assert now == previous, sorted(set(now) ^ set(previous))
    unchanged()
    run = subprocess.Popen([sys.executable, "-m", "tinycl_nodes.cli", *args], stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    end = time.monotonic() + 60
    while not list(out.glob(f"{design.STAGE_PREFIX}*/cand_*.onnx")) and run.poll() is None and time.monotonic() < end:
        time.sleep(0.05)
    assert run.poll() is None, run.stderr.read()    # scoring: its candidates are being written
    run.send_signal(signal.SIGINT)                  # Ctrl-C
    assert run.wait(60) != 0
    unchanged()                                     # nor its own folder left behind


def test_a_quantizer_failure_and_a_folder_given_as_model_are_one_line(tmp_path, data_dir, monkeypatch, capsys):
    """onnxruntime's quantizer raised through the design in a traceback of many lines; a folder was "not found".
    (The failure is injected where onnxruntime raises it: the real ones came from models that now quantize.)"""
    import onnxruntime.quantization

    def fail(*args, **kwargs):
        raise RuntimeError("[ONNXRuntimeError] : 2 : INVALID_ARGUMENT : Got invalid dimensions\n more detail")

    monkeypatch.setattr(onnxruntime.quantization, "quantize_static", fail)
    model = exported(tmp_path / "m.onnx")
    assert main(["design", "--model", str(model), "--data", str(data_dir), "--out", str(tmp_path / "out"),
                 "--cut", "/net/MaxPool_8/MaxPool", *QUICK]) == 2
    err = capsys.readouterr().err.strip()
    assert re.fullmatch(r"error: cannot quantize \S+\.onnx: \[ONNXRuntimeError\] : 2 : INVALID_ARGUMENT : Got "
                        r"invalid dimensions", err), err
    assert main(["design", "--model", str(tmp_path), "--out", str(tmp_path / "out"), *QUICK]) == 2
    assert "a directory" in capsys.readouterr().err


def test_a_model_without_node_names_is_fine_tuned_with_each_nodes_own_attributes(tmp_path):
    """The fine-tune looked attributes up by node name: in a model without names every node had the last one's, and
    the fine-tune failed with KeyError: 'kernel_shape' (a max-pool with the BatchNormalization's attributes)."""
    unnamed = exported(tmp_path / "unnamed.onnx", names=lambda op, i: "")
    X = np.random.default_rng(0).integers(0, 256, (32, 28, 28)).astype(np.uint8)
    done = design.finetune(unnamed, X, np.arange(32) % 2, 1, tmp_path / "tuned.onnx", batch=16)
    assert done["epochs"] == 1 and np.isfinite(done["loss_last"]) and (tmp_path / "tuned.onnx").is_file()
