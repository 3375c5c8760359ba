import argparse
import json

from tinycl_nodes.bench import run_bench


def test_bench_writes_every_stage(tmp_path, data_dir):
    out = tmp_path / "bench.json"
    assert run_bench(argparse.Namespace(data=str(data_dir), samples=200, out=str(out), graph=False, fleet=False,
                                        camera=False)) == 0
    r = json.loads(out.read_text())
    assert set(r["extract_us"]) == {"mnist_0to5_fp32", "mnist_0to5_int8", "mnist_0to5_int8_fused_kernels"}
    for name in ("tinyndc", "tinycl"):
        s = r["systems"][name]
        assert set(s["stages_us"]) == {"clustering", "active model", "active model update", "clustering update"}
        assert all(v > 0 for v in s["stages_us"].values())
        assert s["ratio_learning_to_frozen"] == sum(s["stages_us"].values()) / r["extract_us"]["mnist_0to5_fp32"]


def test_camera_bench_takes_a_domain_this_process_has_not_configured(tmp_path):
    """Cyclone keeps a domain's config while the process uses it: the bench, run in a process (a test suite) that
    holds its first-choice domain configured another way, must take another one."""
    import shutil

    from tinycl_nodes.bus.dds import acquire_domain, release_domain, unconfigured_domain
    from tinycl_nodes.bus.dds_config import loopback_config
    from tinycl_nodes.camera_bench import BENCH_DOMAINS, bench_node_at_30fps

    first = unconfigured_domain(*BENCH_DOMAINS)     # the domain the bench would take now
    other = tmp_path / "other-loopback.xml"         # the same loopback settings under another name: another config
    shutil.copyfile(loopback_config(), other)
    acquire_domain(first, f"file://{other}")
    try:
        r = bench_node_at_30fps(seconds=2.0)
    finally:
        release_domain(first)
    assert r["received"] > 0 and r["processed"] > 0, r


def test_a_64x64_jpeg_camera_learns_as_the_28x28_path(data_dir):
    """The camera bench's experiment (``make bench``: 5 seeds), one seed: MNIST enlarged to 64x64, JPEG-compressed and
    decoded as a CompressedImage is, through the re-exported RGB model, learns as well as the 28x28 path."""
    from tinycl_nodes.camera_bench import bench_tinyndc_jpeg64

    r = bench_tinyndc_jpeg64(str(data_dir), seeds=1)
    for name in ("tinyndc", "tinycl"):
        assert r[name]["28x28"] > 95.0 and abs(r[name]["difference_points"]) <= 0.5, r
