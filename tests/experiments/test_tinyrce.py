"""The TinyRCE experiment on real data: the issue's targets as regression guards, JSON shape, CLI.

The whole HAR protocol (16 users + 4 new users) and CWRU run in a few seconds, so the figures
asserted here are the ones docs/tinyrce.md reports, not a subset's.
"""

from __future__ import annotations

import json

import pytest

from tinycl_nodes.experiments import tinyrce as exp
from tinycl_nodes.extractor import FrozenExtractor, model_path


@pytest.fixture(scope="module")
def har(data_dir):
    return exp.run_experiment("har", FrozenExtractor(model_path("har_elm")), data_dir)


@pytest.fixture(scope="module")
def cwru(data_dir):
    return exp.run_experiment("cwru", FrozenExtractor(model_path("cwru_elm")), data_dir)


@pytest.mark.parametrize("which", ["har", "cwru"])
def test_json_shape(which, request):
    r = request.getfixturevalue(which)
    for name in ("rce", "backprop"):
        m = r["methods"][name]
        assert 0 <= m["accuracy"] <= 100 and m["learning_macs"] > 0 and m["state_bytes"] > 0
    assert set(r["targets"]) >= {"accuracy_gap", "learning_ratio_vs_head", "state_bytes"}
    json.loads(json.dumps(r))


def test_har_targets(har):
    t, m = har["targets"], har["methods"]
    assert t["accuracy_gap"]["met"] and t["accuracy_gap"]["value"] >= -0.5, t   # measured +0.23
    assert t["accuracy_gap_single_user"]["met"], t
    assert t["state_bytes"]["met"] and t["state_bytes"]["value"] <= 40 * 1024
    assert m["rce"]["accuracy"] >= 97.0 and len(m["rce"]["accuracy_per_user"]) == 16
    # learning cost: guards at what is reached (the 100x target is missed, see docs/tinyrce.md).
    # r_max chosen on training data (12, issue 14) commits more prototypes than the old 24: 5.2x
    assert t["learning_ratio_vs_head"]["value"] >= 4, t
    assert 0 < m["rce"]["learning_macs_early_exit"] < 0.7 * m["rce"]["learning_macs"]
    assert t["learning_ratio_vs_cnn"]["value"] >= 80, t
    assert m["rce"]["training_ram_bytes"] < m["backprop"]["training_ram_bytes"]
    # active labelling: fewer labels, close accuracy (r_max 12 asks for 54% of them, 24 asked < 30%)
    assert m["rce_active"]["labels_used"] < 0.6 * m["backprop"]["labels_used"]
    assert m["rce_active"]["accuracy"] >= m["backprop"]["accuracy"] - 2.0


def test_har_new_user_learns_from_label_requests(har):
    nu = har["new_user"]
    assert nu["mean"]["accuracy_after"] >= nu["mean"]["accuracy_before"] + 2.0, nu["mean"]
    assert nu["mean"]["accuracy_after"] >= 99.0
    for u in nu["users"].values():
        assert 0 < u["labels_asked"] <= nu["label_budget"] < u["stream_length"]
        assert u["accuracy_after"] >= u["accuracy_before"]
        assert u["curve"][0][:2] == [0, 0] and u["curve"][-1][1] == u["labels_asked"]


def test_cwru_targets(cwru):
    t = cwru["targets"]
    assert t["accuracy_gap"]["met"] and t["accuracy_gap"]["value"] >= -2.0, t        # measured −1.69
    assert t["state_bytes"]["met"]
    assert cwru["methods"]["rce"]["accuracy"] >= 95.0
    assert t["learning_ratio_vs_head"]["value"] >= 4, t   # 4.71 with r_max 24 chosen on training data
    assert t["learning_ratio_vs_cnn"]["value"] >= 80, t


def test_cli_writes_json_png_and_tables(tmp_path, capsys):
    out = tmp_path / "r.json"
    assert exp.main(["--dataset", "har", "--cnn-epochs", "0", "--base-subjects", "1-4", "--new-subjects", "13",
                     "--seeds", "1", "--out", str(out)]) == 0   # no PyTorch run; a short new-user scenario
    r = json.loads(out.read_text())
    assert set(r["methods"]) >= {"rce", "backprop"} and out.with_suffix(".png").stat().st_size > 10_000
    text = capsys.readouterr().out
    assert "Targets" in text and "paper" in text


def test_cli_without_pytorch_says_the_cnn_baseline_is_left_out(tmp_path, capsys, monkeypatch):
    """After `make demo` (no `train` extra), README's `tinycl experiment tinyrce --dataset cwru` left out the end-to-end
    CNN's row and targets without a word; it says so once."""
    import sys

    monkeypatch.setitem(sys.modules, "torch", None)          # an environment without PyTorch
    assert exp.main(["--dataset", "cwru", "--out", str(tmp_path / "c.json")]) == 0
    text = capsys.readouterr().out
    assert text.count("note: no PyTorch here: the end-to-end CNN baseline is left out") == 1, text
    assert "cnn_e2e" not in json.loads((tmp_path / "c.json").read_text())["methods"]
    assert exp.main(["--dataset", "cwru", "--cnn-epochs", "0", "--out", str(tmp_path / "d.json")]) == 0
    assert "no PyTorch" not in capsys.readouterr().out


def test_cli_missing_data_is_one_line(tmp_path, capsys):
    assert exp.main(["--dataset", "cwru", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: CWRU folder not found") and str(tmp_path / "missing") in err
    assert len(err.splitlines()) == 1


def test_cwru_cheaper_distances(cwru):
    """Constants chosen on the validation fold (int8 ±12; cap 32 after a 4-feature coarse pass);
    guards at the values measured on the test windows."""
    m, ch = cwru["methods"], cwru["cheaper"]
    rce, cap, q8 = m["rce"], m["rce_cap"], m["rce_int8"]
    assert cap["learning_macs"] < 0.4 * rce["learning_macs"]                 # measured 4.50 M vs 15.28 M
    assert cap["inference_macs"] == cap["prototypes"] * 4 + 32 * (64 - 4) < 0.3 * rce["inference_macs"]
    assert cap["accuracy"] >= rce["accuracy"] - 0.5                           # measured +0.13 points
    assert q8["state_bytes"] < 0.6 * rce["state_bytes"]                       # int8 centers: F + 14 B each
    assert q8["accuracy"] >= rce["accuracy"] - 0.5                            # measured +1.17 points
    assert m["rce_int8_cap"]["accuracy"] >= rce["accuracy"] - 0.5             # measured +0.78 points
    assert ch["rce_int8_cap"]["ratio_vs_head"] > 2.5 * ch["rce"]["ratio_vs_head"]   # 14.9x vs 4.71x


def test_har_cheaper_distances_where_the_budget_fills(har):
    """One model on all base subjects fills the 40 KiB: int8 centers hold ~3.5x the prototypes,
    and the visit cap (16 after an 8-feature coarse pass) gives back the distances they cost."""
    b = har["base_model_variants"]
    for name in ("rce", "rce_int8", "rce_cap", "rce_int8_cap"):
        assert b[name]["state_bytes"] <= 40 * 1024, (name, b[name])
    assert b["rce_int8"]["prototypes"] > 3 * b["rce"]["prototypes"]              # measured 524 vs 151
    assert b["rce_int8"]["accuracy"] >= b["rce"]["accuracy"] + 1.0                # measured 95.07 vs 92.25
    assert b["rce_int8"]["learning_macs"] > b["rce"]["learning_macs"]             # more prototypes, more distances
    q = b["rce_int8_cap"]
    assert q["inference_macs"] == q["prototypes"] * 8 + 16 * (64 - 8)
    assert q["learning_macs"] < 0.6 * b["rce"]["learning_macs"]                  # measured 11.7 M vs 24.1 M
    assert q["accuracy"] >= b["rce"]["accuracy"] + 1.0                            # measured 94.61 vs 92.25
    per_user = har["cheaper"]["rce_int8_cap"]
    assert per_user["ratio_vs_head"] > 2.5 * har["cheaper"]["rce"]["ratio_vs_head"]   # 15.07x vs 5.22x
