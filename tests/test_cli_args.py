"""A bad option value of a ``tinycl`` command is one line naming the option, exit 2, before anything runs or is
written (these were tracebacks deep in a run, or, for ``select --grids``, an empty run written over the record)."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import yaml

from tinycl_nodes.cli import main
from tinycl_nodes.core.errors import TinyclError
from tinycl_nodes.launcher import CONFIG_DIR

CASES = [   # (argv, the option, words of the line)
    (["experiment", "tinyndc", "--sweep", "1,abc"], "--sweep", ["whole number", "'abc'"]),
    (["experiment", "tinyndc", "--sweep", "0"], "--sweep", ["at least 1"]),
    (["experiment", "tinyndc", "--test-fraction", "1"], "--test-fraction", ["[0.01, 1)"]),
    (["experiment", "scenarios", "--seed", "-1"], "--seed", ["at least 0"]),
    (["experiment", "latent", "--methods", "latent_fp32,nope"], "--methods", ["unknown 'nope'", "latent_fp32"]),
    (["experiment", "select", "--grids", "tinyol.lrr"], "--grids", ["unknown 'tinyol.lrr'", "tinyol.lr"]),
    (["experiment", "tinyrce", "--memory", "0"], "--memory", ["at least 1"]),
    (["experiment", "asking", "--budget", "60", "-1"], "--budget", ["at least 0"]),
    (["design", "--model", "mnist_0to5_fp32", "--ram", "256KiB", "--flash", "1MiB", "--prune", "0,1.5"], "--prune",
     ["[0, 1)", "1.5"]),
    (["bench", "--samples", "0"], "--samples", ["at least 1"]),
    # were OverflowError tracebacks
    (["design", "--model", "mnist_0to5_fp32", "--ram", "inf", "--flash", "1MiB"], "--ram", ["1B to 1TiB", "'inf'"]),
    (["design", "--model", "mnist_0to5_fp32", "--ram", "256KiB", "--flash", "1e400KiB"], "--flash",
     ["1B to 1TiB", "'1e400KiB'"]),
    (["design", "--model", "mnist_0to5_fp32", "--ram", "256Kb", "--flash", "1MiB"], "--ram",
     ["256KiB", "kB, MB, GB", "KiB, MiB, GiB", "'256Kb'"]),
    # were accepted: the bag was ignored; all but the last 3 (1) images were used
    (["experiment", "tinyndc", "--folder", "imgs", "--bag", "b"], "--bag", ["not allowed with argument --folder"]),
    (["model", "quantize", "m.onnx", "--calib", "imgs", "--max-images", "-3"], "--max-images", ["at least 1", "-3"]),
    (["model", "range", "m.onnx", "--images", "imgs", "--max-images", "-1"], "--max-images/--max-samples",
     ["at least 1", "-1"]),
]

FLEET_SETUP = ["fleet", "setup", "DIR", "--fleet", "f1", "--devices", "d1"]
FLEET_CASES = [   # were written into mosquitto.conf, certificates already expired, or an OverflowError traceback
    (["--port", "99999"], "argument --port: must be at most 65535"),
    (["--plaintext-port", "-3"], "argument --plaintext-port: must be at least 1"),
    (["--port", "0"], "argument --port: must be at least 1"),
    (["--days", "0"], "argument --days: must be at least 1"),
    (["--days", "99999999"], "argument --days: must be at most 36500"),
    (["--port", "8883", "--plaintext-port", "8883"], "--plaintext-port: 8883 is the TLS port too"),
]


@pytest.mark.parametrize("extra, words", FLEET_CASES, ids=[c[0][0] + c[0][1] for c in FLEET_CASES])
def test_fleet_setup_refuses_a_port_or_lifetime_out_of_reach(tmp_path, capsys, extra, words):
    with pytest.raises(SystemExit) as stop:
        main([a.replace("DIR", str(tmp_path / "b")) for a in FLEET_SETUP] + extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and words in err[-1], err
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("argv, option, words", CASES, ids=[" ".join(c[0][:3]) for c in CASES])
def test_a_bad_option_value_is_one_line_and_exit_2(tmp_path, capsys, argv, option, words):
    out = tmp_path / "out.json"
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--out", str(out)])
    assert stop.value.code == 2 and not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    assert f"error: argument {option}: " in err[-1] and all(w in err[-1] for w in words), err[-1]


@pytest.mark.parametrize("text, size", [("256KiB", 256 * 1024), ("1MiB", 1024 ** 2), ("2GiB", 2 * 1024 ** 3),
                                        ("64kB", 64_000), ("64KB", 64_000), ("1.5MB", 1_500_000), ("1GB", 10 ** 9),
                                        ("300000", 300_000), ("512B", 512)])
def test_a_size_takes_every_unit_its_message_names(text, size):
    """The message says B, kB, MB, GB, KiB, MiB, GiB: GiB, kB and GB were refused."""
    from tinycl_nodes.arg_types import byte_size

    assert byte_size(text) == size


def test_the_demo_refuses_a_source_it_has_no_in_process_twin_for(tmp_path, capsys):
    """`tinycl demo -p sensor.source:=folder` counted MNIST's 10 classes, waited 60 s for samples that never came and
    failed with 'no prediction for 60 s'; it now says in one line what runs such a source."""
    assert main(["demo", "-p", "sensor.source:=folder", "-p", f"sensor.folder:={tmp_path}",
                 "--out", str(tmp_path / "d.json")]) == 2
    err = capsys.readouterr().err.strip()
    assert "a folder source has none: tinycl launch tinyndc -p sensor.source:=folder" in err, err
    assert len(err.splitlines()) == 1 and not (tmp_path / "d.json").exists()


def test_launch_port_is_refused_for_a_graph_without_a_label_app(capsys):
    """``tinycl launch --port`` is ros2 launch's ``port:=`` (graphs.LAUNCH_ARGUMENTS): a graph without a label app has
    no port to set, said in one line before any node starts."""
    assert main(["launch", "tinyndc", "--port", "9000"]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: launch: --port: graph tinyndc has no label app (graphs with one: tinyrce, camera, imu)"]


def _place(tmp_path, kind: str) -> str:
    """An --out no file can be written to: a folder, a path under a file, a path under /proc."""
    (tmp_path / "a_file").write_text("x")
    (tmp_path / "a_folder").mkdir()
    return {"folder": str(tmp_path / "a_folder"), "under a file": str(tmp_path / "a_file" / "r.json"),
            "under /proc": "/proc/tinycl-no-such/r.json"}[kind]


OUT_COMMANDS = [["experiment", "tinyndc"], ["experiment", "latent"], ["experiment", "tinyrce", "--dataset", "har"],
                ["demo"], ["bench"], ["model", "import", "mnist_0to5_fp32"], ["demo-fleet", "--no-hosts"]]


@pytest.mark.parametrize("kind", ["folder", "under a file", "under /proc"])
@pytest.mark.parametrize("argv", OUT_COMMANDS, ids=[" ".join(c[:2]) for c in OUT_COMMANDS])
def test_an_out_that_cannot_be_written_is_refused_before_the_work(tmp_path, capsys, argv, kind):
    """Each was a traceback (FileNotFoundError, IsADirectoryError), most of them after the whole run."""
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--out", _place(tmp_path, kind)])
    err = capsys.readouterr().err.strip().splitlines()
    assert stop.value.code == 2 and "Traceback" not in "\n".join(err), err
    assert "error: argument --out: " in err[-1] and ("folder" in err[-1] or "cannot write in" in err[-1]), err[-1]


def test_a_design_out_that_is_a_file_is_refused(tmp_path, capsys):
    (tmp_path / "a.onnx").write_text("x")
    with pytest.raises(SystemExit) as stop:
        main(["design", "--model", "mnist_0to5_fp32", "--ram", "256KiB", "--flash", "1MiB", "--out",
              str(tmp_path / "a.onnx")])
    assert stop.value.code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith(f"{tmp_path / 'a.onnx'} is a file, not a folder")
    assert (tmp_path / "a.onnx").read_text() == "x"


def test_an_out_in_a_new_folder_is_taken_and_nothing_is_made_before_the_work(tmp_path):
    from tinycl_nodes.arg_types import output_file, output_folder

    assert output_file(str(tmp_path / "new" / "deeper" / "r.json")) == str(tmp_path / "new" / "deeper" / "r.json")
    assert output_folder(str(tmp_path / "new2")) == str(tmp_path / "new2")
    assert list(tmp_path.iterdir()) == []


BAD_GRAPH_VALUES = [   # (argv beyond the command, the one line): each started every node, or stalled 60 s
    (["-p", "learner.publish_every:=nan"], "error: learner: parameter publish_every: Input should be a valid integer"),
    (["-p", "sensor.stream_length:=-5"],
     "error: sensor: parameter stream_length: Input should be greater than or equal to 1 (got -5)"),
    (["-p", "seed:=1e3"], "error: sensor: parameter seed: Input should be a valid integer"),
    (["--config", "BAD_YAML"], "error: launch: parameter file BAD_YAML is not valid YAML"),
]


@pytest.mark.parametrize("command", [["launch", "tinyndc"], ["demo"]])
@pytest.mark.parametrize("extra, line", BAD_GRAPH_VALUES, ids=[c[1][1].split(":=")[0] if len(c[0]) > 1 else "yaml"
                                                              for c in BAD_GRAPH_VALUES])
def test_a_bad_node_parameter_is_one_line_before_any_node_starts(tmp_path, capsys, command, extra, line):
    """`tinycl launch` and `tinycl demo` check every node's parameters as the node will (``launcher.node_settings``)
    before starting any: a bad one started all six nodes, each printing its error, and the launch exited 1; the demo
    failed on int('nan') in a traceback, or, for a bad stream length, waited 60 s for a sensor that had exited."""
    bad = tmp_path / "bad.yaml"
    bad.write_text("learner:\n  ros__parameters:\n    publish_every: [\n")
    extra = [str(bad) if a == "BAD_YAML" else a for a in extra]
    started = time.monotonic()
    assert main([*command, *extra, *(["--out", str(tmp_path / "d.json")] if command == ["demo"] else [])]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(line.replace("BAD_YAML", str(bad))), err
    assert time.monotonic() - started < 20 and not (tmp_path / "d.json").exists()


def test_a_problem_of_every_nodes_shared_file_is_said_once(tmp_path):
    from tinycl_nodes.launcher import graph_commands, node_settings

    cfg = tmp_path / "g.yaml"
    cfg.write_text("/**:\n  ros__parameters:\n    dds_config: [1, 2]\n")
    with pytest.raises(TinyclError) as err:
        node_settings(graph_commands("tinyndc", str(cfg)))
    lines = str(err.value).splitlines()
    assert lines == ["launch: parameter dds_config: Input should be a valid string (got [1, 2])"], lines


@pytest.mark.parametrize("stdin, code, lines", [
    ("GOOD", 0, []),
    ("BOGUS", 2, [f"{node}: parameter preset: Input should be 'tinyndc', 'tinycl', '{third}' or 'rce' (got 'bogus')"
                  for node, third in (("learner", "supervised"), ("labeler", "clustering"))]),
    ("[1, 2]", 2, ["parameter_check: its input is not a node → arguments JSON object: expected {node: [ROS "
                   "arguments]}"]),
    ("{", 2, ["parameter_check: its input is not a node → arguments JSON object: Expecting property name enclosed in "
              "double quotes: line 1 column 2 (char 1)"]),
], ids=["good", "bad value", "not an object", "not JSON"])
def test_parameter_check_is_the_launchers_check_in_a_process_of_its_own(tmp_path, stdin, code, lines):
    """What ``ros2 launch`` runs in the nodes' Python before it starts any (``ros_launch._check_parameters``; the
    launch file's own Python may lack pydantic 2): exit 0, or 2 with one line per problem on stdout."""
    bogus = tmp_path / "bogus.yaml"
    bogus.write_text("/**:\n  ros__parameters:\n    preset: bogus\n")
    files = [str(CONFIG_DIR / "tinyndc.yaml")] + ([str(bogus)] if stdin == "BOGUS" else [])
    if stdin in ("GOOD", "BOGUS"):
        stdin = json.dumps({name: ["--ros-args", *(a for f in files for a in ("--params-file", f)), "-r",
                                   f"__node:={name}"] for name in ("learner", "labeler", "extractor")})
    run = subprocess.run([sys.executable, "-m", "tinycl_nodes.parameter_check"], input=stdin, capture_output=True,
                         text=True, timeout=60)
    assert (run.returncode, run.stdout.splitlines()) == (code, lines), run.stderr[-2000:]


def test_demo_fleet_refuses_a_bad_parameter_file_or_replay_before_anything_starts(tmp_path, capsys):
    bad, short = tmp_path / "bad.yaml", tmp_path / "short.yaml"
    bad.write_text("a: [\n")
    doc = yaml.safe_load(CONFIG_DIR.joinpath("fleet.yaml").read_text())
    doc.setdefault("sensor", {}).setdefault("ros__parameters", {})["stream_length"] = -5
    short.write_text(yaml.safe_dump(doc))
    assert main(["demo-fleet", "--no-hosts", "--config", str(bad)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: demo_fleet: parameter file {bad} is not valid YAML: while parsing a flow node"]
    assert main(["demo-fleet", "--no-hosts", "--config", str(short)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "error: sensor: parameter stream_length: Input should be greater than or equal to 1 (got -5)"]


EXPERIMENT_CASES = [   # (argv, the line): tracebacks after seconds of work, or a run on nothing written as a result
    (["experiment", "tinyrce", "--dataset", "har", "--base-subjects", "98,99", "--new-subjects", ""],
     "no subject(s) [98, 99] in the HAR data"),
    (["experiment", "tinyrce", "--dataset", "har", "--base-subjects", "5-1"], "'5-1' is no range of subject numbers"),
    (["experiment", "tinyrce", "--dataset", "har", "--new-subjects", "13-3000000"], "'13-3000000' is no range"),
    (["experiment", "tinyrce", "--dataset", "har", "--base-subjects", ""], "--base-subjects: none given"),
    (["experiment", "select", "--dataset", ","], "--dataset: no dataset in ','"),
    (["experiment", "tinyndc", "--old-classes", ","], "--old-classes: no class in ','"),
    (["experiment", "latent", "--methods", "slda_final", "--seeds", "1", "--stream", "10", "--labels", "100000"],
     "--labels 100000: class '0' has"),
]


@pytest.mark.parametrize("argv, words", EXPERIMENT_CASES, ids=[" ".join(c[0][1:4]) for c in EXPERIMENT_CASES])
def test_an_experiment_option_the_data_cannot_meet_is_one_line(tmp_path, capsys, data_dir, argv, words):
    out = tmp_path / "r.json"
    assert main([*argv, "--data", str(data_dir), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0] and not out.exists(), err


@pytest.mark.parametrize("argv, words", [(["aggregate", "--fleet", "f", "--duration", "nan"], "argument --duration"),
                                         (["fleet", "check", "--broker-dir", "x", "--identity", "a", "--hold", "-1"],
                                          "argument --hold")])
def test_a_duration_that_is_no_number_of_seconds_is_one_line(capsys, argv, words):
    """Both were taken as floats: nan and -1 ran."""
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and f"{words}: must be in [0, inf)" in capsys.readouterr().err
