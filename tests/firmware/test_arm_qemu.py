"""Cortex-M7 build and the emulated board (QEMU mps2-an500 + instruction-counting plugin).

Runs micro_ros_firmware/tools/bench_firmware.py on a short real MNIST stream (60 samples) and
checks: the board's predictions, pseudo-labels and feature CRCs equal the host build's; the
plugin's counts are exact (two spin loops differ by exactly 2·Δn instructions); the learning part
fits the targets (≤ 0.6 ms per sample at 480 MHz, IPC = 1; state ≤ 16 KiB for 10 classes).
"""

from __future__ import annotations

import importlib.util

from .conftest import FW, need


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_firmware", FW / "tools" / "bench_firmware.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_cortex_m7_board_matches_host_and_meets_targets(tmp_path, data_dir):
    need("cmake", "gcc", "arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm", "qemu-system-arm")
    bench = _bench_module()
    res = bench.bench(n_stream=60, data=str(data_dir), work=tmp_path)
    assert res["calibration"]["exact"], res["calibration"]
    assert res["predictions_match_host"], res["mismatched_samples"]
    assert res["learning_within_target"], res["learning_ms_at_480mhz"]
    assert res["state_bytes"] == res["state_bytes_reported_by_board"] <= 16 * 1024
    assert set(res["stages"]) == {"frozen_model", "clustering", "active_model", "clustering_update", "active_update"}
    assert all(v["instructions_per_sample"] > 0 for v in res["stages"].values())
    assert 0 < res["core_library"]["flash_bytes"] < 512 * 1024 and res["ram_bytes"] < 128 * 1024
    assert "-mfloat-abi=hard" in res["compiler"]
