"""The metrics node (a process, dds backend) ends once a replay is scored — also a replay that is over
before the node's first tick: its ground truth came and its publisher went between two ticks."""

from __future__ import annotations

import json
import time

import pytest

from tests.nodes.conftest import node, spin_until
from tinycl_nodes.bus import create_bus
from tinycl_nodes.interfaces import ns_to_time
from tinycl_nodes.restarts import USER_ERROR

pytestmark = pytest.mark.waits      # what make test does with it: pyproject.toml


def replay(domain: int, metrics, labels: list[int], predicted, pause_s: float = 0.0):
    """A replay to the metrics node in /m: ``labels`` as ground truth, ``predicted(i, label)`` as the learner's class
    (None: no prediction), then the replay ends (its ground_truth publisher goes). Returns (when it ended, the
    learner's bus, to shut down once the node has exited)."""
    sensor = create_bus("sensor", "/m", backend="dds", dds_config="loopback", domain=domain)
    learner = create_bus("learner", "/m", backend="dds", dds_config="loopback", domain=domain)
    truth = sensor.create_publisher("ground_truth", "GroundTruth", "reliable")
    preds = learner.create_publisher("predictions", "Prediction", "reliable")
    assert spin_until(sensor, lambda: truth.get_subscription_count() and preds.get_subscription_count(), 60), \
        metrics.lines[-5:]
    GT, P, Header, Time = (sensor.msg(t) for t in ("GroundTruth", "Prediction", "std_msgs/msg/Header",
                                                      "builtin_interfaces/msg/Time"))
    t0 = time.time_ns()
    for i, label in enumerate(labels):
        h = Header(stamp=ns_to_time(t0 + i * 1000, Time))
        truth.publish(GT(header=h, label=label, class_name="", learnable=False))
        if (cls := predicted(i, label)) is not None:
            preds.publish(P(header=h, sample_id=i, class_id=cls, class_name="", confidence=0.9))
    if pause_s:
        spin_until(sensor, lambda: False, pause_s)
    sensor.shutdown()
    return time.monotonic(), learner


def test_a_replay_over_before_the_first_tick_is_scored(domain, tmp_path):
    out = tmp_path / "metrics.json"
    labels = [3, 1, 4, 1, 5]
    # the first tick comes 5 s after the node started; the whole replay below is over well before
    with node("metrics", domain, "publish_period_s:=5.0", "idle_timeout_s:=1.0", f"out:={out}",
              remaps=("__ns:=/m",)) as metrics:
        ended_s, learner = replay(domain, metrics, labels, lambda i, label: label if i else 9)
        code = metrics.proc.wait(timeout=30)
        learner.shutdown()
    assert code == 0, metrics.lines[-10:]
    final = json.loads(out.read_text())
    assert final["stream_samples"] == final["predictions"] == len(labels) and final["lost"] == 0, final
    assert abs(final["accuracy"] - 80.0) < 1e-6, final          # the first of five was wrong
    print(f"metrics node: a {len(labels)}-sample replay over before its first tick scored and ended "
          f"{time.monotonic() - ended_s:.1f} s after the replay's publisher went")


def test_a_window_without_a_prediction_is_not_scored_and_the_node_fails(domain, tmp_path):
    """The extractor stopped mid-replay: the last ``window`` samples have no prediction. The final line used to be
    'accuracy 0.00% …' and the node exited 0 (the launch ended as a success); now it says there is nothing to score,
    as an error with no accuracy, and exits with USER_ERROR, which stops a launch as a failure."""
    with node("metrics", domain, "publish_period_s:=0.5", "idle_timeout_s:=1.0", "window:=3",
              remaps=("__ns:=/m",)) as metrics:
        # the last three never predicted
        _, learner = replay(domain, metrics, [3, 1, 4, 1, 5], lambda i, label: label if i < 2 else None, 0.5)
        code = metrics.proc.wait(timeout=30)
        learner.shutdown()
    assert code == USER_ERROR, metrics.lines[-10:]
    final = [ln for ln in metrics.lines if "final:" in ln]
    assert len(final) == 1 and "[ERROR]" in final[0], metrics.lines[-10:]
    assert ("final: no prediction for the last 3 of 5 stream samples (2 predictions, 3 lost): nothing to score"
            in final[0]) and "accuracy" not in final[0], final
