"""Start-up mistakes end a node with exit code 2 and one line naming the problem, never a
traceback; a preset switch over an existing state says which file holds what and what to do."""

from __future__ import annotations

import logging
import os
import subprocess
import sys

import numpy as np
import pytest

from tinycl_nodes.bus import create_bus
from tinycl_nodes.bus.local import LocalGraph
from tinycl_nodes.extractor import MODELS_DIR, model_path
from tinycl_nodes.model_tools import import_model
from tinycl_nodes.nodes.learner import Learner, LearnerParams

from .conftest import ROOT


def run(node: str, tmp_path, *args: str, env: dict[str, str] | None = None) -> tuple[int, list[str]]:
    cmd = [sys.executable, "-m", f"tinycl_nodes.nodes.{node}", "--ros-args", *args]
    e = {**os.environ, "TINYCL_BUS": "dds", "ROS_DOMAIN_ID": "0", **(env or {})}
    p = subprocess.run(cmd, cwd=ROOT, env=e, capture_output=True, text=True, timeout=60)
    return p.returncode, [ln for ln in p.stderr.splitlines() if ln.strip()]


CASES = {   # name: (node, args, env, words the one line must hold)
    "dds_config missing": ("learner", ["-p", "dds_config:={tmp}/none.xml"], {}, ["none.xml", "does not exist"]),
    "dds_config broken XML": ("learner", ["-p", "dds_config:={tmp}/bad.xml"], {}, ["bad.xml", "not well-formed"]),
    "ROS_DOMAIN_ID=abc": ("learner", [], {"ROS_DOMAIN_ID": "abc"}, ["ROS_DOMAIN_ID", "abc"]),
    "ROS_DOMAIN_ID=999": ("learner", [], {"ROS_DOMAIN_ID": "999"}, ["0..232", "999"]),
    "params file not UTF-8": ("learner", ["--params-file", "{tmp}/latin1.yaml"], {}, ["latin1.yaml", "UTF-8"]),
    "rosbag of unknown format": ("sensor", ["-p", "source:=rosbag", "-p", "bag:={tmp}/bag.txt"], {},
                                 ["bag.txt", "cannot read rosbag"]),
    "rosbag folder without metadata": ("sensor", ["-p", "source:=rosbag", "-p", "bag:={tmp}/emptybag"], {},
                                       ["emptybag", "cannot read rosbag"]),
    "dataset missing": ("sensor", ["-p", "data_dir:={tmp}/nodata", "-p", "wait_timeout_s:=30"], {},
                        ["MNIST", "nodata"]),
    "state_dir is a file": ("learner", ["-p", "state_dir:={tmp}/afile"], {}, ["afile", "is a file"]),
    "state_dir cannot be created": ("learner", ["-p", "state_dir:={tmp}/afile/sub"], {},
                                    ["afile/sub", "cannot be created", "Not a directory"]),
    # OpenCV 5.1 takes -1 for "any camera" and dies of SIGSEGV where there is none: the launcher restarted the sensor
    "camera index -1": ("sensor", ["-p", "source:=camera", "-p", "camera_device:=-1"], {},
                        ["sensor: parameter camera_device: not a camera: give an index 0, 1", "(got -1)"]),
    "camera device empty": ("sensor", ["-p", "source:=camera", "-p", "camera_device:=''"], {},
                            ["parameter camera_device: not a camera", "(got '')"]),
    "rate_hz absurd": ("sensor", ["-p", "rate_hz:=1e308"], {}, ["parameter rate_hz", "less than or equal to 100000"]),
    # an infinite number was taken where only a lower bound is set
    "period infinite": ("exporter", ["-p", "period_s:=.inf"], {},
                        ["exporter: parameter period_s: Input should be a finite number (got inf)"]),
    "radius infinite": ("labeler", ["-p", "preset:=rce", "-p", "rce_r_max:=.inf"], {},
                        ["labeler: parameter rce_r_max: Input should be a finite number (got inf)"]),
    # a backbone cut before its pooling (3,136 features): the learner and the labeler sat on F×F matrices, silently
    "features too wide, learner": ("learner", ["-p", "model:={tmp}/wide.onnx"], {},
                                   ["3136 features, at most 2048", "global pooling"]),
    "features too wide, labeler": ("labeler", ["-p", "model:={tmp}/wide.onnx"], {},
                                   ["TiedGaussianClusterer: 3136 features, at most 2048"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_start_up_is_one_line_and_exit_2(case, tmp_path):
    (tmp_path / "bad.xml").write_text("<CycloneDDS><Domain><General>")
    (tmp_path / "latin1.yaml").write_bytes("learner:\n  ros__parameters:\n    preset: 'caf\xe9'\n".encode("latin-1"))
    (tmp_path / "bag.txt").write_text("not a bag")
    (tmp_path / "emptybag").mkdir()
    (tmp_path / "afile").write_text("x")
    node, args, env, words = CASES[case]
    if "wide" in case:
        import_model(model_path("mnist_0to5_fp32"), tmp_path / "wide.onnx", MODELS_DIR / "mnist_0to5.json",
                     cut="/features/features.7/MaxPool")
    own_state = ["-p", f"state_dir:={tmp_path}/s"] if node == "learner" and "state_dir" not in str(args) else []
    code, lines = run(node, tmp_path, *[a.format(tmp=tmp_path) for a in args], *own_state, env=env)
    lines = [ln for ln in lines if "has no feature range" not in ln]      # an imported model's, said before
    assert code == 2, lines
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    assert all(w in lines[0] for w in words), lines[0]


@pytest.mark.parametrize("param, closest", [("presett:=tinyndc", "preset"), ("sensr.rate_hz:=30", "sensor"),
                                            ("learner.publish_evry:=3", "publish_every")])
def test_launch_names_the_closest_valid_parameter(param, closest, tmp_path):
    p = subprocess.run([sys.executable, "-m", "tinycl_nodes.cli", "launch", "tinyndc", "-p", param], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, env={**os.environ, "TMPDIR": str(tmp_path)})
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1, lines
    assert f"did you mean {closest!r}" in lines[0] and "Traceback" not in p.stderr
    assert not list(tmp_path.glob("tinycl-*"))     # nothing started, no temporary file left


def test_preset_switch_over_a_state_dir_explains_and_keeps_learning(tmp_path, caplog):
    """The tinycl preset's head (streaming LDA) in state_dir, then the learner starts with tinyndc (CWR*)."""
    bus = create_bus("learner", "/", backend="local", graph=LocalGraph())
    first = Learner(bus, LearnerParams(state_dir=str(tmp_path), preset="tinycl"))
    first.configure()
    first.head.learn_one(np.ones(64, np.float32), 1)
    first.close()
    bus2 = create_bus("learner", "/", backend="local", graph=LocalGraph())
    with caplog.at_level(logging.ERROR):
        second = Learner(bus2, LearnerParams(state_dir=str(tmp_path), preset="tinyndc"))
        second.configure()
    # the learner's: an earlier test's aiohttp task, collected meanwhile, once logged "Task was destroyed" here
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR and r.name == "learner"]
    assert len(errors) == 1, errors
    assert all(w in errors[0] for w in ("learner.state", "StreamingLDA", "preset tinycl", "CWRStar",
                                        "preset:=tinycl", "moved to")), errors[0]
    second.head.learn_one(np.ones(64, np.float32), 2)     # the graph goes on with a fresh head
    assert second.head.kind == "CWRStar" and second.head.n_seen == 1
    assert len(list(tmp_path.glob("learner.state.bad-*"))) == 1


@pytest.mark.parametrize("section, closest", [("lerner", "did you mean 'learner'?"), ("/r1/extractr", "extractor")])
def test_launch_refuses_a_file_section_naming_no_node_of_the_graph(section, closest, tmp_path):
    """``sed 's/^learner:/lerner:/'`` on the parameter file: the learner ran on its defaults, without a word."""
    f = tmp_path / "wt5.yaml"
    f.write_text((ROOT / "config" / "tinyndc.yaml").read_text() + f"{section}:\n  ros__parameters:\n    seed: 1\n")
    p = subprocess.run([sys.executable, "-m", "tinycl_nodes.cli", "launch", "tinyndc", "--config", str(f)], cwd=ROOT,
                       capture_output=True, text=True, timeout=60, env={**os.environ, "TMPDIR": str(tmp_path)})
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1, lines
    assert lines[0].startswith(f"error: launch: {f}: section {section!r}: graph tinyndc has no node ") and \
        closest in lines[0], lines[0]
    assert not list(tmp_path.glob("tinycl-*"))     # nothing started, no temporary file left
