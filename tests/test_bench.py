import argparse
import json

from tinycl_nodes.bench import run_bench


def test_bench_writes_every_stage(tmp_path, data_dir):
    out = tmp_path / "bench.json"
    assert run_bench(argparse.Namespace(data=str(data_dir), samples=200, out=str(out), graph=False, fleet=False)) == 0
    r = json.loads(out.read_text())
    assert set(r["extract_us"]) == {"mnist_0to5_fp32", "mnist_0to5_int8", "mnist_0to5_int8_fused_kernels"}
    for name in ("tinyndc", "tinycl"):
        s = r["systems"][name]
        assert set(s["stages_us"]) == {"clustering", "active model", "active model update", "clustering update"}
        assert all(v > 0 for v in s["stages_us"].values())
        assert s["ratio_learning_to_frozen"] == sum(s["stages_us"].values()) / r["extract_us"]["mnist_0to5_fp32"]
