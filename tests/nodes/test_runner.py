"""Start-up of a node: ROS-style arguments, ROS 2 parameter files, one line per bad value."""

import re
import subprocess
import sys

import pytest

from tinycl_nodes.core.errors import TinyclError
from tinycl_nodes.nodes.learner import LearnerParams
from tinycl_nodes.nodes.runner import collect_parameters, load_params_file, parse_ros_args, validate
from tinycl_nodes.nodes.sensor import SensorParams


def test_parse_ros_args():
    a = parse_ros_args(["--ros-args", "--params-file", "x.yaml", "-r", "__ns:=/r1/tinycl", "-r", "__node:=s2",
                        "-p", "rate_hz:=100.5", "-p", "source:=rosbag", "--log-level", "debug"], "sensor")
    assert (a.node_name, a.namespace, a.params_files, a.log_level) == ("s2", "/r1/tinycl", ["x.yaml"], "debug")
    assert a.overrides == {"rate_hz": 100.5, "source": "rosbag"}
    with pytest.raises(TinyclError, match="name:=value"):
        parse_ros_args(["--ros-args", "-p", "rate_hz"], "sensor")
    with pytest.raises(TinyclError, match="unexpected"):
        parse_ros_args(["--rate", "3"], "sensor")


def test_params_file_wildcard_and_node_sections(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("/**:\n  ros__parameters:\n    model: m\n    preset: tinyndc\n"
                 "learner:\n  ros__parameters:\n    publish_every: 7\n"
                 "/r1/learner:\n  ros__parameters:\n    publish_every: 9\n")
    wild, own = load_params_file(str(f), "learner", "/r1")
    assert wild == {"model": "m", "preset": "tinyndc"} and own == {"publish_every": 9}
    with pytest.raises(TinyclError, match="not found"):
        load_params_file(str(tmp_path / "none.yaml"), "learner", "/")
    (tmp_path / "bad.yaml").write_text("learner: [1, 2\n")
    with pytest.raises(TinyclError, match="not valid YAML"):
        load_params_file(str(tmp_path / "bad.yaml"), "learner", "/")


def test_a_later_file_outranks_an_earlier_ones_own_section(tmp_path):
    """``ros2 launch camera_topic:=…`` passes its values in a ``/**`` file after the parameter file, whose own
    ``extractor:`` section says reliable: the launch's value must win (it lost, and no best-effort frame arrived)."""
    from tinycl_nodes.nodes.extractor import ExtractorParams

    config, launch = tmp_path / "config.yaml", tmp_path / "launch.yaml"
    config.write_text("/**:\n  ros__parameters:\n    model: mnist_0to5_int8\n"
                      "extractor:\n  ros__parameters:\n    image_qos: reliable\n    expect_ground_truth: true\n"
                      "    threads: 1\n")
    launch.write_text("/**:\n  ros__parameters:\n    image_qos: sensor_data\n    expect_ground_truth: false\n"
                      "    preset: tinycl\n")
    ros = parse_ros_args(["--ros-args", "--params-file", str(config), "--params-file", str(launch),
                          "-r", "__ns:=/cam", "-p", "threads:=2"], "extractor")
    values = collect_parameters(ExtractorParams, ros)
    assert (values["image_qos"], values["expect_ground_truth"], values["model"]) == ("sensor_data", False,
                                                                                     "mnist_0to5_int8")
    assert values["threads"] == 2 and "preset" not in values     # -p last; another node's name skipped
    ros = parse_ros_args(["--ros-args", "--params-file", str(launch), "--params-file", str(config)], "extractor")
    assert collect_parameters(ExtractorParams, ros)["image_qos"] == "reliable"    # the other order: the file's


def test_a_shared_name_no_node_declares_is_an_error(tmp_path):
    f = tmp_path / "typo.yaml"
    f.write_text("/**:\n  ros__parameters:\n    presett: tinyndc\n    model: mnist_0to5_fp32\n")
    with pytest.raises(TinyclError, match=r"'/\*\*' parameter 'presett' is declared by no tinycl node "
                                          r"\(did you mean 'preset'\?\)"):
        collect_parameters(SensorParams, parse_ros_args(["--ros-args", "--params-file", str(f)], "sensor"))
    f.write_text("/**:\n  ros__parameters:\n    preset: tinyndc\n    fleet: f1\n")   # other nodes' names
    assert "preset" not in collect_parameters(SensorParams, parse_ros_args(["--ros-args", "--params-file", str(f)],
                                                                           "sensor"))


def test_every_node_script_is_a_node_module():
    from pathlib import Path

    from tinycl_nodes.graphs import NODE_MODULES

    scripts = Path(__file__).resolve().parents[2] / "scripts"
    assert {p.name for p in scripts.iterdir()} == set(NODE_MODULES)
    for name, module in NODE_MODULES.items():
        assert f'run("{module}"' in (scripts / name).read_text(), name   # through executable.run


def test_validation_names_every_bad_value():
    with pytest.raises(TinyclError) as err:
        validate(SensorParams, {"rate_hz": -3, "source": "webcam", "sede": 1}, "sensor")
    lines = str(err.value).splitlines()
    assert len(lines) == 3
    assert any("parameter rate_hz" in ln and "-3" in ln for ln in lines)
    assert any("parameter source" in ln and "webcam" in ln for ln in lines)
    assert any("parameter sede" in ln for ln in lines)
    assert validate(LearnerParams, {"preset": "tinyndc"}, "learner").preset == "tinyndc"


def test_node_with_bad_parameter_exits_with_one_line_per_value():
    proc = subprocess.run([sys.executable, "-m", "tinycl_nodes.nodes.learner", "--ros-args", "-p", "publish_every:=0",
                           "-p", "preset:=magic"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    err = proc.stderr.strip().splitlines()
    assert len(err) == 2 and all(ln.startswith("error: learner: parameter ") for ln in err), err
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("module, duration, value, words", [
    ("learner", "publish_period_s", "1e300", "Input should be less than or equal to 31536000"),
    ("labeler", "request_ttl_s", "1e300", "Input should be less than or equal to 31536000"),
    ("learner", "publish_period_s", "1e-9", "Input should be greater than or equal to 0.001"),
    ("exporter", "period_s", "1e-9", "a duration is 0 or at least 0.001 s, not 1e-09"),
    # not durations: an integer is ROS 2's 64 bits at most, the C core's batch its uint32_t (2**32 was "cwr init: bad
    # argument", naming no parameter; 10**12 was cut to 3,567,587,328 without a word)
    ("board", "publish_every", str(10**21), "Input should be less than or equal to 9223372036854775807"),
    ("board", "batch_size", str(2**32), "Input should be less than or equal to 4294967295")])
def test_a_duration_or_an_integer_out_of_reach_is_one_line(module, duration, value, words, tmp_path):
    """``publish_period_s:=1e300`` passed the parameters (finite, above 0) and ended the learner with an OverflowError
    traceback where its timer took it in nanoseconds; a year is the most any duration without its own bound takes.
    ``publish_period_s:=1e-9`` passed too, and the learner's timer then took a whole core (6.0 s of CPU in 6 s, against
    0.7 s at its default 1 s): a duration is 0, where its field allows it (the exporter's 0 is "off"), or 1 ms at
    least."""
    proc = subprocess.run([sys.executable, "-m", f"tinycl_nodes.nodes.{module}", "--ros-args", "-p", "bus:=local",
                           "-p", f"state_dir:={tmp_path}", "-p", f"{duration}:={value}"],
                          capture_output=True, text=True, timeout=60)
    err = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(err) == 1, proc.stderr[-2000:]
    assert err[0].startswith(f"error: {module}: parameter {duration}: {words}"), err


def test_missing_model_is_one_line():
    proc = subprocess.run([sys.executable, "-m", "tinycl_nodes.nodes.exporter", "--ros-args", "-p", "model:=/nope/x.onnx",
                           "-p", "bus:=local"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "extractor model not found: /nope/x.onnx" in proc.stderr and "Traceback" not in proc.stderr
    proc = subprocess.run([sys.executable, "-m", "tinycl_nodes.nodes.exporter", "--ros-args", "-p",
                           "model:=mnist_0to5_fp33", "-p", "bus:=local"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "(did you mean 'mnist_0to5_fp32'?)" in proc.stderr, proc.stderr


def test_a_model_without_a_feature_range_is_said_once_and_its_range_then_used(tmp_path, caplog):
    """A user's model had no range and nothing said so: only |x| > 1e6 was refused, which lets 1e5 poison a head."""
    import logging
    import shutil

    import numpy as np

    from tinycl_nodes.bus import create_bus
    from tinycl_nodes.bus.local import LocalGraph
    from tinycl_nodes.extractor import model_path
    from tinycl_nodes.model_range import MARGIN, measure, write
    from tinycl_nodes.nodes.learner import Learner

    mine = tmp_path / "my_backbone.onnx"
    shutil.copy(model_path("mnist_0to5_fp32"), mine)          # no card, no range: another extractor

    def start(model: str) -> Learner:
        node = Learner(create_bus("learner", "/", backend="local", graph=LocalGraph()),
                       LearnerParams(state_dir=str(tmp_path / f"state_{model.rsplit('/', 1)[-1]}"), model=model))
        node.configure()
        node.close()
        return node

    with caplog.at_level(logging.WARNING):
        node = start(str(mine))
    said = [r.getMessage() for r in caplog.records if "no feature range" in r.getMessage()]
    assert node.bound is None and len(said) == 1 and f"tinycl model range {mine}" in said[0], said
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert start("mnist_0to5_fp32").bound is not None
    assert not [r for r in caplog.records if "no feature range" in r.getMessage()]
    images = np.random.default_rng(0).integers(0, 256, (30, 28, 28), dtype=np.uint8)
    entry = measure(mine, images)
    write(mine, entry)
    assert start(str(mine)).bound == MARGIN * entry["abs_max"]


def test_whether_the_sensor_reads_a_camera_follows_the_order_the_node_reads_its_parameters(tmp_path):
    """``param_files.sensor_is_live`` (what both launchers decide a live camera by: a camera, or a bag of one) ranks
    as the node does:
    file's ``/**``, the file's own section (bare or namespaced), a later file, the launcher's ``/**`` values, ``-p``."""
    from tinycl_nodes.param_files import sensor_is_live

    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("/**:\n  ros__parameters:\n    source: camera\n")
    assert sensor_is_live([str(first)], "/", {}, {})
    first.write_text("/**:\n  ros__parameters:\n    source: camera\n/r1/sensor:\n  ros__parameters:\n"
                     "    source: mnist\n")
    assert sensor_is_live([str(first)], "/", {}, {}) and not sensor_is_live([str(first)], "/r1", {}, {})
    second.write_text("sensor:\n  ros__parameters:\n    source: camera\n")
    assert sensor_is_live([str(first), str(second)], "/r1", {}, {})
    assert not sensor_is_live([str(first), str(second)], "/r1", {"source": "folder"}, {})
    assert sensor_is_live([str(first)], "/r1", {"source": "folder"}, {"source": "camera"})
    assert sensor_is_live([str(first)], "/r1", {}, {"source": "rosbag"})     # a recorded camera has no truth either
    (tmp_path / "bad.yaml").write_text("sensor: [unclosed\n")    # the sensor itself says what is wrong
    assert not sensor_is_live([str(tmp_path / "bad.yaml"), str(tmp_path / "none.yaml")], "/", {}, {})


def test_what_ros2_param_dump_writes_is_taken_back(tmp_path):
    """A ``ros2 param dump`` file given back was refused: "" for a parameter not set (bus, domain_id, min_confidence,
    stream_classes) and YAML text ('{}', '[320, 200]') went to pydantic as they were; file, ``-p`` and ``ros2 param
    set`` now take a value the one way (``ParamSpec.from_ros``), and a real mapping or list still works."""
    from tinycl_nodes.nodes.labeler import LabelerParams

    dump = tmp_path / "dump.yaml"
    dump.write_text("/r3/learner:\n  ros__parameters:\n    bus: ''\n    domain_id: ''\n    class_names: '{}'\n"
                    "    min_confidence: ''\n    state_dir: ''\n    use_sim_time: false\n"
                    "/r3/sensor:\n  ros__parameters:\n    stream_classes: ''\n    labelled_classes: '[1, 2]'\n"
                    "    camera_device: '0'\n    domain_id: '7'\n"
                    "/r3/labeler:\n  ros__parameters:\n    picture_size: '[320, 200]'\n"
                    "    class_names: '{0: cup, 1: ball}'\n")

    def params(model, node, *args):
        ros = parse_ros_args(["--ros-args", "--params-file", str(dump), "-r", "__ns:=/r3", *args], node)
        return validate(model, collect_parameters(model, ros), node)

    learner = params(LearnerParams, "learner")
    assert (learner.bus, learner.domain_id, learner.class_names, learner.min_confidence, learner.state_dir) == \
        (None, None, {}, None, None)
    sensor = params(SensorParams, "sensor")
    assert (sensor.stream_classes, sensor.labelled_classes, sensor.camera_device, sensor.domain_id) == \
        (None, [1, 2], 0, 7)
    labeler = params(LabelerParams, "labeler")
    assert (labeler.picture_size, labeler.class_names) == ((320, 200), {0: "cup", 1: "ball"})
    # -p: YAML text, "" for not set, and the value itself
    learner = params(LearnerParams, "learner", "-p", "min_confidence:=", "-p", 'class_names:="{0: cup}"')
    assert (learner.min_confidence, learner.class_names) == (None, {0: "cup"})
    learner = params(LearnerParams, "learner", "-p", "min_confidence:=0.5", "-p", "class_names:={3: mug}")
    assert (learner.min_confidence, learner.class_names) == (0.5, {3: "mug"})
    # real values in a file still work
    dump.write_text("labeler:\n  ros__parameters:\n    picture_size: [640, 400]\n    class_names: {0: cup}\n")
    labeler = params(LabelerParams, "labeler")
    assert (labeler.picture_size, labeler.class_names) == ((640, 400), {0: "cup"})
    # text that is not YAML: one line naming node, parameter and value
    dump.write_text("labeler:\n  ros__parameters:\n    class_names: '{0: cup'\n")
    with pytest.raises(TinyclError) as err:
        params(LabelerParams, "labeler")
    assert str(err.value).startswith("labeler: parameter class_names: not valid YAML text: ") and \
        str(err.value).endswith("(got '{0: cup')") and "\n" not in str(err.value), err.value


def test_a_misspelt_node_section_is_an_error_and_other_nodes_sections_are_not(tmp_path):
    """``lerner:`` left the learner on its defaults without a word; a file shared with other nodes (a camera driver, a
    second sensor renamed with ``-r __node:=``) is normal, as ROS 2 has it."""
    f = tmp_path / "p.yaml"
    f.write_text("lerner:\n  ros__parameters:\n    publish_every: 7\n")
    with pytest.raises(TinyclError) as err:
        load_params_file(str(f), "learner", "/")
    assert str(err.value) == f"learner: {f}: section 'lerner' names no tinycl node (did you mean 'learner'?)"
    f.write_text("/r1/extractr:\n  ros__parameters:\n    threads: 2\n")
    with pytest.raises(TinyclError, match=r"section '/r1/extractr' names no tinycl node \(did you mean 'extractor'"):
        load_params_file(str(f), "sensor", "/r1")
    f.write_text("usb_cam:\n  ros__parameters:\n    video_device: /dev/video0\n"
                 "sensor2:\n  ros__parameters:\n    seed: 3\n/r1/front_sensor:\n  ros__parameters:\n    seed: 4\n"
                 "learner:\n  ros__parameters:\n    publish_every: 7\n")
    assert load_params_file(str(f), "learner", "/r1") == ({}, {"publish_every": 7})


BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 8))


@pytest.mark.parametrize("text, words", [
    # were a RecursionError traceback (node and launcher), skipped without a word, and a line of 32 MB
    ("learner:\n  ros__parameters:\n    save_every: " + "[" * 100_000 + "]" * 100_000 + "\n",
     "is nested too deep to be parameters"),
    ("learner:\n  save_every: -5\n", "section 'learner' holds no ros__parameters"),
    ("learner: 5\n", "section 'learner' holds no ros__parameters"),
    (BOMB + "learner:\n  ros__parameters:\n    save_every: *a7\n", "parameter save_every: Input should be a valid"),
])
def test_a_parameter_file_a_node_cannot_use_is_one_short_line(tmp_path, text, words):
    from tinycl_nodes.launcher import graph_commands, node_settings

    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(TinyclError) as err:
        ros = parse_ros_args(["--ros-args", "--params-file", str(f)], "learner")
        validate(LearnerParams, collect_parameters(LearnerParams, ros), "learner")
    assert words in str(err.value) and len(str(err.value)) < 400 and "\n" not in str(err.value), str(err.value)[:400]
    with pytest.raises(TinyclError) as err:          # the launcher's look ahead at the file, too
        node_settings(graph_commands("tinyndc", str(f)))
    assert words in str(err.value) and len(str(err.value)) < 400, str(err.value)[:400]


@pytest.mark.parametrize("argv, words", [
    (["-r", "__ns:=bad!ns"], "namespace 'bad!ns': a namespace is /, or /-separated names"),   # ran, made its folder
    (["-r", "__ns:=/robot1/"], "namespace '/robot1/'"),
    (["-r", "__ns:=/1robot"], "namespace '/1robot'"),
    (["-r", "__node:=my-learner"], "node name 'my-learner': letters, digits and _"),
    (["-p", "publish_every:=["], "-p publish_every: '[' is not a YAML value"),                    # was a traceback
])
def test_a_name_ros2_would_refuse_or_a_value_that_is_not_yaml_is_one_line(argv, words):
    with pytest.raises(TinyclError, match=re.escape(words)):
        parse_ros_args(["--ros-args", *argv], "learner")
    for good in ("/", "/robot1/tinycl", "robot1", "/_r2"):
        assert parse_ros_args(["--ros-args", "-r", f"__ns:={good}"], "learner").namespace == good
