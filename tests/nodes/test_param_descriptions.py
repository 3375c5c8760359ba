"""Every node parameter has a description (``ros2 param describe``), and the ranges ROS 2 gets are the models'."""

from __future__ import annotations

import importlib
import math

import pytest
from pydantic import BaseModel, Field, ValidationError

from tinycl_nodes.bus.param_spec import param_specs, range_step
from tinycl_nodes.fleet.aggregator import AggregatorParams
from tinycl_nodes.graphs import GRAPHS, LAUNCH_PRESETS
from tinycl_nodes.nodes.runner import MAX_DURATION_S, MIN_DURATION_S, NodeParams

NODES = sorted({name for nodes in GRAPHS.values() for name in nodes} | {"board", "mqtt_bridge"})


def node_params(module_name: str) -> type[NodeParams]:
    """The one parameter model a module defines."""
    module = importlib.import_module(module_name)
    models = [obj for obj in vars(module).values()
              if isinstance(obj, type) and issubclass(obj, NodeParams) and obj.__module__ == module.__name__]
    assert len(models) == 1, f"{module_name}: parameter models {models}"
    return models[0]


MODELS = {name: node_params(f"tinycl_nodes.nodes.{name}") for name in NODES} | {"aggregator": AggregatorParams}


def specs_of(model: type[NodeParams]) -> dict:
    return {s.name: s for s in param_specs(model)}


@pytest.mark.parametrize("node", sorted(MODELS))
def test_every_parameter_has_a_description(node):
    model = MODELS[node]
    specs = param_specs(model)
    assert [s.name for s in specs] == list(model.model_fields)
    missing = [s.name for s in specs if not s.description.strip()]
    assert not missing, f"{node}: parameters without a description: {missing}"
    for s in specs:
        assert len(s.description) <= 200, f"{node}.{s.name}: description of {len(s.description)} characters"
        assert "#" not in s.description, f"{node}.{s.name}: a comment marker in the description"


def test_graph_nodes_are_all_covered():
    assert {"sensor", "extractor", "labeler", "learner", "exporter", "metrics", "label_app", "board",
            "mqtt_bridge"} <= set(MODELS)


@pytest.mark.parametrize("node, name, kind, lower, upper", [
    ("sensor", "stream_length", "integer", 1, 10000),
    ("sensor", "labels_per_class", "integer", 1, 1000),
    ("sensor", "rate_hz", "double", 0.0, 100000.0),
    ("extractor", "threads", "integer", 1, 64),
    ("labeler", "max_pending", "integer", 1, 1000),
    ("label_app", "port", "integer", 0, 65535),
    ("exporter", "period_s", "double", 0.0, MAX_DURATION_S),       # a duration: at most a year, unless it says
    ("learner", "publish_period_s", "double", MIN_DURATION_S, MAX_DURATION_S),   # gt=0 as a duration: 1 ms
    ("mqtt_bridge", "mqtt_session_expiry_s", "integer", 0, 2**32 - 1),   # its own bound (MQTT's), kept
    ("mqtt_bridge", "mqtt_keepalive_s", "integer", 5, 3600),
    ("mqtt_bridge", "max_bytes", "integer", 1024, 64 << 20),
    ("aggregator", "trim", "double", 0.0, 0.5),          # lt=0.5: upper bound, exclusive
    ("aggregator", "save_interval_s", "double", 0.0, 3600.0),
])
def test_ranges_kept(node, name, kind, lower, upper):
    s = specs_of(MODELS[node])[name]
    assert (s.kind, s.lower, s.upper) == (kind, lower, upper)
    assert range_step(s) is not None


def test_a_launch_offers_the_presets_both_the_labeler_and_the_learner_take():
    """A launch's ``preset:=`` sets both nodes'; ``--show-args`` offered ``supervised``, which the labeler refuses."""
    both = set(specs_of(MODELS["labeler"])["preset"].choices) & set(specs_of(MODELS["learner"])["preset"].choices)
    assert sorted(LAUNCH_PRESETS) == sorted(both)


class _Counts(BaseModel):
    n: int = Field(1, gt=0, lt=10)


@pytest.mark.parametrize("model, name, refused, ros_range, words", [
    (MODELS["sensor"], "imu_rate_hz", 0.0, (math.nextafter(0.0, 1.0), 100_000.0), "greater than 0"),
    (AggregatorParams, "trim", 0.5, (0.0, math.nextafter(0.5, 0.0)), "less than 0.5"),
    (_Counts, "n", 0, (1, 9), "greater than 0, less than 10"),
])
def test_an_exclusive_bound_is_not_shown_as_allowed(model, name, refused, ros_range, words):
    """ROS 2's ranges include their ends: ``ros2 param describe`` showed "Min value: 0.0" for ``imu_rate_hz``
    (``gt=0``), a value the node refuses. The range is the first value inside the bound, and the words say it."""
    spec = specs_of(model)[name]
    lo, hi = range_step(spec)
    assert (lo, hi) == ros_range and not lo <= refused <= hi, (lo, hi)
    assert spec.constraints == words
    with pytest.raises(ValidationError):
        model.model_validate({**({"fleet": "lab"} if model is AggregatorParams else {}), name: refused})


@pytest.mark.parametrize("model, name, refused, ros_range, words", [
    (MODELS["sensor"], "imu_max_gap_s", 0.0005, (MIN_DURATION_S, 60.0), ""),            # gt=0: at least 1 ms
    (MODELS["exporter"], "period_s", 0.0005, (0.0, MAX_DURATION_S), "0, or at least 0.001"),   # 0 is "off"
])
def test_a_duration_is_1_ms_at_least_or_0_where_0_is_allowed(model, name, refused, ros_range, words):
    """A duration that is above 0, and not 0, is 1 ms at least, and ``ros2 param describe`` shows it: in the range, or
    in words where the range cannot (0 allowed, what lies between refused)."""
    spec = specs_of(model)[name]
    assert range_step(spec) == ros_range and spec.constraints == words
    with pytest.raises(ValidationError):
        model.model_validate({name: refused})
    assert getattr(model.model_validate({name: MIN_DURATION_S}), name) == MIN_DURATION_S


def test_defaults_choices_and_patterns_kept():
    sensor = MODELS["sensor"]()
    assert (sensor.source, sensor.stream_length, sensor.har_labelled_subjects, sensor.camera_invert) == \
        ("mnist", 8000, [1], False)
    assert specs_of(MODELS["sensor"])["source"].choices == ("mnist", "rosbag", "camera", "imu", "har", "cwru", "folder")
    assert specs_of(MODELS["sensor"])["rate_hz"].read_only is False          # runtime_mutable kept
    with pytest.raises(ValueError):
        MODELS["exporter"](name="not an identifier")                        # pattern kept
    with pytest.raises(ValueError):
        MODELS["mqtt_bridge"](fleet="lab", device="bad name", mqtt_tls=False)   # FleetName validator kept
    with pytest.raises(ValueError):
        MODELS["mqtt_bridge"](fleet="lab", mqtt_tls=False)                  # device still required
    assert AggregatorParams(fleet="lab").identity == "aggregator"


@pytest.mark.parametrize("node, name, value", [
    ("sensor", "camera_device", 0), ("sensor", "camera_device", "/dev/video0"), ("sensor", "camera_device", "0"),
    ("sensor", "domain_id", 7), ("learner", "min_confidence", 0.25), ("mqtt_bridge", "exact", True),
    ("sensor", "camera_device", "a..."), ("learner", "class_names", {0: "cup", 1: "ball"}),
])
def test_yaml_text_is_one_value_without_a_document_end(node, name, value):
    """``ros2 param get /r3/sensor camera_device`` said ``0\\n...`` (PyYAML's document end after a bare scalar), and
    ``ros2 param dump`` wrote it into the file; the text is the value alone, and taken back as that value."""
    spec = specs_of(MODELS[node])[name]
    shown = spec.to_ros(value)
    assert "\n" not in shown and not shown.endswith("\n...") and shown != "", shown
    assert spec.from_ros(shown) == value


@pytest.mark.parametrize("node", sorted(MODELS))
def test_every_range_is_one_ros2_can_hold(node):
    """An IntegerRange holds int64 and a FloatingPointRange doubles. The integer bound 2**63 - 1 that every unbounded
    integer got (runner.MAX_INTEGER) became 2**63 as a float, and each rclpy node then ended declaring its parameters
    (rcl_interfaces: "The 'to_value' field must be an integer in [-9223372036854775808, 9223372036854775807]"): at
    least 20 ROS 2 tests of a fresh clone failed; this file had passed."""
    for name, spec in specs_of(MODELS[node]).items():
        bounds = range_step(spec)
        if bounds is None:
            continue
        if spec.kind == "integer":
            assert all(type(b) is int and -2**63 <= b < 2**63 for b in bounds), (name, bounds)
        else:
            assert all(type(b) is float for b in bounds), (name, bounds)
