"""`tinycl design` end to end, as a firmware engineer runs it: the candidates are scored on the model card's own
dataset, the chosen model and its C are written, and a budget that nothing fits leaves no earlier choice behind
and fine-tunes nothing."""

from __future__ import annotations

import json

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
