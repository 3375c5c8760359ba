"""The TinyNDC graph as five processes over DDS: nothing lost, the same predictions as the
in-process loop, and a head exported as ONNX and as a C header that agree with each other."""

import os
import subprocess

import numpy as np
import onnxruntime as ort
import pytest
from rich.console import Console

from tinycl_nodes.datasets import load_mnist
from tinycl_nodes.demo import run_demo
from tinycl_nodes.extractor import FrozenExtractor, model_path

from ..domains import free_domain


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROS_DOMAIN_ID", str(free_domain()))
        result = run_demo(None, ["sensor.stream_length:=600", f"exporter.out_dir:={tmp}"],
                          out=str(tmp / "demo.json"), console=Console(file=open(os.devnull, "w")))
    return result, tmp


def test_graph_equals_in_process(demo):
    result, _ = demo
    g, ref = result["graph"], result["in_process"]
    assert g["samples"] == 700 and g["lost"] == 0
    assert ref["identical_predictions"] == ref["of"] == 600
    assert g["accuracy"] == pytest.approx(ref["accuracy"])
    assert all(code == 0 for code in g["exit_codes"].values()), g["exit_codes"]


def test_exported_onnx_and_c_header_agree(demo, tmp_path):
    _, out = demo
    sess = ort.InferenceSession(str(out / "head.onnx"), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    ex = FrozenExtractor(model_path("mnist_0to5_fp32"))
    assert meta["extractor_hash"] == ex.hash
    X, y = load_mnist("test")
    feats = ex.extract(X[:300])
    probs, cls = sess.run(["probabilities", "class_id"], {"features": feats})
    assert probs.shape == (300, 10) and np.allclose(probs.sum(1), 1, atol=1e-5)
    assert np.mean(cls == y[:300]) > 0.9  # the learned head knows all ten digits
    main = tmp_path / "main.c"
    main.write_text('#include <stdio.h>\n#include "head.h"\nint main(void){float x[TINYCL_HEAD_N_FEATURES];'
                    'for(;;){for(int j=0;j<TINYCL_HEAD_N_FEATURES;++j) if(scanf("%f",&x[j])!=1) return 0;'
                    'printf("%d\\n",(int)tinycl_head_class_ids[tinycl_head_predict_row(x)]);}}\n')
    exe = tmp_path / "predict"
    subprocess.run(["cc", "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", f"-I{out}", str(main), "-o", str(exe)],
                   check=True, capture_output=True, text=True)
    text = "\n".join(" ".join(f"{v:.9g}" for v in row) for row in feats)
    c_cls = np.array(subprocess.run([str(exe)], input=text, capture_output=True, text=True, check=True).stdout.split(),
                     np.int64)
    assert np.array_equal(c_cls, cls)


def test_board_graph_equals_in_process(tmp_path, domain, monkeypatch):
    """The C learning core (the firmware's, via ctypes) in the learner's place: same predictions."""
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    result = run_demo(None, ["sensor.stream_length:=300", f"exporter.out_dir:={tmp_path}"],
                      out=str(tmp_path / "demo.json"), console=Console(file=open(os.devnull, "w")),
                      graph_name="tinyndc_board")
    g, ref = result["graph"], result["in_process"]
    assert g["lost"] == 0 and all(code == 0 for code in g["exit_codes"].values()), g
    assert ref["identical_predictions"] == ref["of"] == 300
    assert (tmp_path / "head.onnx").is_file()


def test_wildcard_parameter_reaches_the_nodes_that_declare_it(tmp_path, domain, monkeypatch):
    """`-p preset:=tinyndc` without a node name: like a `/**` parameter-file section, each node
    takes it if it declares `preset` (labeler, learner) and the others ignore it."""
    from tinycl_nodes.launcher import parse_overrides

    assert parse_overrides(["preset:=tinyndc", "sensor.seed:=3"]) == {"*": {"preset": "tinyndc"},
                                                                        "sensor": {"seed": "3"}}
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    result = run_demo(None, ["preset:=tinyndc", "sensor.stream_length:=300", f"exporter.out_dir:={tmp_path}"],
                      out=str(tmp_path / "demo.json"), console=Console(file=open(os.devnull, "w")))
    assert result["preset"] == "tinyndc"
    assert all(code == 0 for code in result["graph"]["exit_codes"].values()), result["graph"]["exit_codes"]
    assert result["in_process"]["identical_predictions"] == 300


def test_head_sent_at_stop_is_exported(tmp_path, domain, monkeypatch):
    """The learner publishes its head only as it stops and the exporter writes only what it has: the graph is
    stopped in turn (sources first, the exporter last), so the exported head is the learner's final one — stopped
    together, the exporter could stop before that head reached it and write none."""
    monkeypatch.setenv("ROS_DOMAIN_ID", str(domain))
    result = run_demo(None, ["sensor.stream_length:=300", f"exporter.out_dir:={tmp_path}", "exporter.period_s:=0",
                             "learner.publish_every:=1000000", "learner.publish_period_s:=100000"],
                      out=str(tmp_path / "demo.json"), console=Console(file=open(os.devnull, "w")))
    assert all(code == 0 for code in result["graph"]["exit_codes"].values()), result["graph"]["exit_codes"]
    meta = ort.InferenceSession(str(tmp_path / "head.onnx"),
                                providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert (meta["version"], meta["n_seen"]) == ("1", str(10 * 10 + 300)), meta   # one version: the one at stop


def test_two_demos_at_once_on_one_domain_keep_to_themselves(tmp_path):
    """Two `tinycl demo` run together on one DDS domain (three people setting up on one machine did): in the one
    namespace ``/`` each fed the other's graph and heard its predictions (8,176 of 8,100 counted, 0 identical to the
    in-process run). Each runs in a namespace of its own now, and both equal the in-process run."""
    import json
    import sys

    env = {**os.environ, "ROS_DOMAIN_ID": str(free_domain())}
    runs = []
    for i in range(2):
        out = tmp_path / f"demo{i}"
        cmd = [sys.executable, "-m", "tinycl_nodes.cli", "demo", "-p", "sensor.stream_length:=300",
               "-p", f"exporter.out_dir:={out / 'export'}", "--out", str(out / "demo.json")]
        runs.append((out, subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)))
    for out, proc in runs:
        text, _ = proc.communicate(timeout=300)
        assert proc.returncode == 0, text[-2000:]
        result = json.loads((out / "demo.json").read_text())
        assert result["graph"]["samples"] == 400 and result["graph"]["lost"] == 0, result["graph"]
        assert result["in_process"]["identical_predictions"] == result["in_process"]["of"] == 300
