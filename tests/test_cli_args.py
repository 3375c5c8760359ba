"""A bad option value of a ``tinycl`` command is one line naming the option, exit 2, before anything runs or is
written (these were tracebacks deep in a run, or, for ``select --grids``, an empty run written over the record)."""

from __future__ import annotations

import pytest

from tinycl_nodes.cli import main

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
