"""The local backend: synchronous in-process delivery, same interface as dds."""

from __future__ import annotations

import logging

import pytest

from tinycl_nodes.bus import LATCHED, RELIABLE, ROUNDS, create_bus, select_backend
from tinycl_nodes.bus.local import LocalGraph


def test_publish_delivers_before_returning() -> None:
    g = LocalGraph()
    a = create_bus("sensor", namespace="/r1", backend="local", graph=g)
    b = create_bus("learner", namespace="/r1", backend="local", graph=g)
    got = []
    b.create_subscription("features", "Features", got.append, RELIABLE)
    pub = a.create_publisher("/r1/features", "Features", RELIABLE)
    F = a.msg("Features")
    for i in range(3):
        pub.publish(F(sample_id=i))
        assert [m.sample_id for m in got] == list(range(i + 1)), "delivered inside publish()"


def test_latched_late_joiner_and_wrong_type() -> None:
    g = LocalGraph()
    a = create_bus("learner", backend="local", graph=g)
    pub = a.create_publisher("head", "Head", LATCHED)
    H = a.msg("Head")
    pub.publish(H(version=1))
    pub.publish(H(version=2))
    late = []
    create_bus("exporter", backend="local", graph=g).create_subscription("/head", "Head", late.append, LATCHED)
    assert [h.version for h in late] == [2]
    with pytest.raises(TypeError, match="expected"):
        pub.publish(a.msg("Features")())
    with pytest.raises(TypeError, match="carries"):
        a.create_subscription("/head", "Features", late.append)


def test_a_late_joiner_of_the_rounds_topic_gets_the_last_16_in_order() -> None:
    """``ROUNDS`` (the fleet's additions on ``global_head``) keeps 16 for a late reader, oldest first; a reader that
    asks for one (``LATCHED``) gets the newest only."""
    g = LocalGraph()
    a = create_bus("mqtt_bridge", backend="local", graph=g)
    pub = a.create_publisher("global_head", "Head", ROUNDS)
    H = a.msg("Head")
    for v in range(1, 21):
        pub.publish(H(version=v))
    late, newest = [], []
    b = create_bus("learner", backend="local", graph=g)
    b.create_subscription("/global_head", "Head", late.append, ROUNDS)
    b.create_subscription("/global_head", "Head", newest.append, LATCHED)
    assert [h.version for h in late] == list(range(5, 21))
    assert [h.version for h in newest] == [20]


def test_bad_callback_is_one_error_line_and_loop_continues(caplog) -> None:
    g = LocalGraph()
    a = create_bus("n", backend="local", graph=g)
    seen = []

    def cb(m):
        if m.sample_id == 1:
            raise ValueError("wrong feature length 3, expected 64")
        seen.append(m.sample_id)
    a.create_subscription("/f", "Features", cb)
    pub = a.create_publisher("/f", "Features")
    with caplog.at_level(logging.ERROR):
        for i in range(3):
            pub.publish(a.msg("Features")(sample_id=i))
    assert seen == [0, 2]
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and "wrong feature length" in errors[0] and "\n" not in errors[0]


def test_timers_parameters_and_stamp() -> None:
    b = create_bus("timed", backend="local", graph=LocalGraph(), parameters={"rate_hz": 50.0})
    assert b.declare_parameter("rate_hz", 10.0) == 50.0 and b.declare_parameter("seed", 3) == 3
    ticks = []
    b.create_timer(0.02, lambda: ticks.append(1))
    b.spin(timeout_s=0.25)
    assert 5 <= len(ticks) <= 14
    s = b.stamp()
    assert s.sec > 1_600_000_000 and 0 <= s.nanosec < 1_000_000_000


def test_backend_selection(monkeypatch) -> None:
    monkeypatch.delenv("TINYCL_BUS", raising=False)
    assert select_backend("local") == "local"
    monkeypatch.setenv("TINYCL_BUS", "local")
    assert select_backend() == "local"
    assert select_backend("dds") == "dds", "explicit argument wins over the environment"
    monkeypatch.delenv("TINYCL_BUS")
    assert select_backend() == "dds", "rclpy is not installed here, so dds is the default"
    with pytest.raises(ValueError, match="unknown bus backend"):
        select_backend("zmq")
