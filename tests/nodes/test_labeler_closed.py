"""The labeler's verdicts on the questions closed lately, for a label app started again: on ``label_closed`` (one
latched message), no longer said again on ``label_status`` to every reader whenever a new one joined (up to 200
messages: ``ros2 topic echo label_status`` showed them as if they were new). The real TinyRCE labeler on a private
DDS domain."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from tests.nodes.conftest import spin_until
from tests.nodes.test_label_app_rename import Robot, labeler_node
from tinycl_nodes.bus import create_bus

pytestmark = pytest.mark.waits      # what make test does with it: pyproject.toml


def test_a_new_reader_of_label_status_hears_only_new_verdicts_and_label_closed_has_them_all(domain, tmp_path):
    bus = create_bus("closed_test", backend="dds", dds_config="loopback", domain=domain)
    try:
        with labeler_node(domain, tmp_path) as labeler:
            r = Robot(bus, "")
            requests: list = []
            bus.create_subscription("label_request", "LabelRequest", requests.append, "reliable")
            bus.create_subscription("labeled", "LabeledFeatures", lambda m: None, "reliable")   # as the learner
            answers = bus.create_publisher("label_answer", "LabelAnswer", "reliable")
            assert spin_until(bus, lambda: r.features.get_subscription_count() > 0
                              and answers.get_subscription_count() > 0, 20), labeler.lines[-10:]
            r.learn(0)
            r.learn(1)
            Features, Header, Time = (bus.msg(t) for t in ("Features", "std_msgs/msg/Header",
                                                           "builtin_interfaces/msg/Time"))
            for k in (1, 2):                                 # far from both classes: two questions
                r.stamp += 1000
                x = np.random.default_rng(100 + k).normal(0, 6, 64).astype(np.float32)
                r.features.publish(Features(header=Header(stamp=Time(sec=r.stamp // 10**9, nanosec=r.stamp % 10**9)),
                                            data=x, extractor_hash=r.hash, sample_id=k, true_label=-1, labelled=False))
            assert spin_until(bus, lambda: len(requests) == 2, 15), labeler.lines[-10:]
            rid1, rid2 = (str(q.request_id) for q in requests)
            Answer = bus.msg("LabelAnswer")
            answers.publish(Answer(header=Header(), request_id=rid1, class_id=1, new_class_name="", answered_by="t"))
            answers.publish(Answer(header=Header(), request_id=rid2, class_id=-2, new_class_name="",
                                   answered_by="t (skip)"))
            assert spin_until(bus, lambda: len(r.status) == 2, 10), r.status
            late: list[dict] = []                            # as `ros2 topic echo label_status` started now
            bus.create_subscription("label_status", "std_msgs/msg/String", lambda m: late.append(json.loads(m.data)),
                                    "reliable")
            spin_until(bus, lambda: False, 2.5)              # the labeler's tick (1 s) has seen the new reader
            assert late == [], late
            closed: list[dict] = []
            bus.create_subscription("label_closed", "std_msgs/msg/String",
                                    lambda m: closed.append(json.loads(m.data)), "latched")
            assert spin_until(bus, lambda: closed, 10), labeler.lines[-10:]
            spin_until(bus, lambda: False, 0.5)
            assert "Traceback" not in "\n".join(labeler.lines)
    finally:
        bus.shutdown()
    assert closed == [{"closed": [
        {"request_id": rid1, "status": "learned", "class_id": 1, "class_name": "seated", "message": ""},
        {"request_id": rid2, "status": "skipped", "class_id": -1, "class_name": "", "message": ""}]}], closed


def test_the_app_takes_label_closed_once_and_refuses_a_bad_one_in_a_line(domain, tmp_path):
    """The label app reads ``label_closed``: a malformed one (not JSON, not ``{"closed": [...]}``, over 1 MiB) is
    refused in one line naming the topic; a good one closes a question it shows, and the same list again (the labeler
    publishes the whole list whenever it changes) does nothing twice."""
    from tests.e2e.test_label_app_browser import _request
    from tests.nodes.test_label_app_rename import app_node

    bus = create_bus("closed_test", backend="dds", dds_config="loopback", domain=domain)
    try:
        with app_node(domain, tmp_path) as app:
            app.wait_for_line("label app on", 30)
            closed = bus.create_publisher("label_closed", "std_msgs/msg/String", "latched")
            asks = bus.create_publisher("label_request", "LabelRequest", "reliable")
            assert spin_until(bus, lambda: closed.get_subscription_count() > 0 and asks.get_subscription_count() > 0,
                              20)
            asks.publish(_request(bus, "q-1", np.full((28, 28), 9, np.uint8), {0: "walking"}))
            app.wait_for_line("request q-1 pending", 10)
            String = bus.msg("std_msgs/msg/String")
            for bad in ("{not json", '["closed"]', '{"closed": 3}', '{"closed": ["' + "x" * (1 << 20) + '"]}'):
                closed.publish(String(data=bad))
                time.sleep(0.3)
            good = json.dumps({"closed": [{"request_id": "q-1", "status": "skipped", "class_id": -1, "class_name": "",
                                           "message": ""}]})
            closed.publish(String(data=good))
            app.wait_for_line("request q-1 skipped at the labeler", 10)
            closed.publish(String(data=good))
            time.sleep(1.0)
            lines = list(app.lines)
    finally:
        bus.shutdown()
    refused = [ln for ln in lines if "label_closed:" in ln]
    assert len(refused) == 4, refused
    assert "not a JSON object" in refused[0] and "not a JSON object" in refused[1], refused
    assert 'expected {"closed": [verdict, ...]}' in refused[2] and "more than the 1048576 accepted" in refused[3]
    assert len([ln for ln in lines if "q-1 skipped at the labeler" in ln]) == 1
    assert "Traceback" not in "\n".join(lines)
