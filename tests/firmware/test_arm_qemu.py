"""Cortex-M7 build and the emulated board (QEMU mps2-an500 + instruction-counting plugin).

Runs micro_ros_firmware/tools/bench_firmware.py on a short real MNIST stream (60 samples) and
checks: the board's predictions, pseudo-labels and feature CRCs equal the host build's; the
plugin's counts are exact (two spin loops differ by exactly 2·Δn instructions); the learning part
fits the targets (≤ 0.6 ms per sample at 480 MHz, IPC = 1; state ≤ 16 KiB for 10 classes).
"""

from __future__ import annotations

import importlib.util

import pytest

from .conftest import FW, need


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_firmware", FW / "tools" / "bench_firmware.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def bench_work(tmp_path_factory):
    """One build directory for both images (the latent image reuses the configured core)."""
    return tmp_path_factory.mktemp("bench")


def test_cortex_m7_board_matches_host_and_meets_targets(bench_work, data_dir):
    need("cmake", "gcc", "arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm", "qemu-system-arm")
    bench = _bench_module()
    res = bench.bench(n_stream=60, data=str(data_dir), work=bench_work)
    assert res["calibration"]["exact"], res["calibration"]
    assert res["predictions_match_host"], res["mismatched_samples"]
    assert res["learning_within_target"], res["learning_ms_at_480mhz"]
    assert res["frozen_model_within_target"], res["stages"]["frozen_model"]   # ≤ 8 ms: exact counts, not a timing
    assert res["state_bytes"] == res["state_bytes_reported_by_board"] <= 16 * 1024
    assert set(res["stages"]) == {"frozen_model", "clustering", "active_model", "clustering_update", "active_update"}
    assert all(v["instructions_per_sample"] > 0 for v in res["stages"].values())
    undo = res["undo"]   # the undo log, in the image since the board app learns through it
    assert 0 < res["core_library"]["flash_bytes"] < 512 * 1024 and res["ram_bytes"] - undo["struct_bytes"] < 128 * 1024
    # a frame through the full log: its learning and the oldest sample's again (rolled into the base); a change of an
    # answer replays every sample kept
    learning = undo["frame_learning_without_log"]["instructions_per_sample"]
    assert learning < undo["frame_through_full_log"]["instructions_per_sample"] < 4 * learning, undo
    assert undo["change_of_an_answer"]["per_sample_replayed"] > 0.5 * learning, undo
    assert "-mfloat-abi=hard" in res["compiler"]


def test_cortex_m7_latent_head_matches_host(bench_work, data_dir):
    """Image → int8 CNN → latent replay head (tinycl_latent.c) on the CNN's cut codes, on the M7 image: one
    training round (32 new + the preset's 4 epochs) then predictions; every cut (CRC) and every prediction equal
    to the host build's; counts exact."""
    need("cmake", "gcc", "arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm", "qemu-system-arm")
    res = _bench_module().bench_latent(n_learn=32, n_predict=8, data=str(data_dir), work=bench_work, numpy_check=False)
    assert res["calibration_exact"] and res["cut_codes_match_host"] and res["predictions_match_host"]
    assert res["training_rounds"] == 1 and res["patterns_trained"] == 4 * 32
    assert res["training_round"]["instructions"] > res["patterns_trained"] * res["per_trained_pattern"]["macs"]
    assert 0 < res["prediction"]["instructions_per_sample"] < res["learn_step"]["instructions_per_sample"]
    assert res["learned_sample_with_frozen"]["instructions_per_sample"] > res["frozen_model"]["instructions_per_sample"] > 1e6
    assert res["struct_bytes"] < 1024 * 1024 and 0 < res["library"]["flash_bytes"] < 512 * 1024


@pytest.mark.parametrize("metric", ["l1", "l2"])
def test_cortex_m7_rce_int8_cap_matches_host_and_numpy(bench_work, data_dir, metric):
    """TinyRCE's int8 centers + visit cap on the M7 (the DSP paths: USADA8 for l1, SXTB16/SSUB16/SMLAD
    for l2): the HAR all-base-subjects model from numpy's state blob, 30 new-subject windows decided
    and learned, every decision equal to the host build's and numpy's, in both forms; the int8 + cap
    form holds 3.5x the prototypes and decides in fewer instructions (the figures: make
    bench-firmware, results/firmware.json)."""
    need("cmake", "gcc", "arm-none-eabi-gcc", "arm-none-eabi-nm", "qemu-system-arm")
    res = _bench_module().bench_rce(n_stream=30, data=str(data_dir), work=bench_work, metric=metric)
    fp32, q8 = res["forms"]["fp32"], res["forms"]["int8_cap"]
    for form in (fp32, q8):
        assert form["decisions_match_host"] and form["decisions_match_numpy"] and form["host_state_matches_numpy"]
    if metric == "l1":   # the experiment's model: the 40 KiB budget full in both forms
        assert (fp32["prototypes_after_base"], q8["prototypes_after_base"]) == (151, 524)
    P = q8["prototypes_after_base"]
    assert P > 4 * q8["max_visit"] and q8["decide"]["macs"] == P * 8 + 16 * (64 - 8)   # the cap binds
    assert q8["decide"]["instructions"] < fp32["decide"]["instructions"]
