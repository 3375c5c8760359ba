"""A rename from the phone, judged by the labeler (the owner of class names) and its verdict on the phone:
the real TinyRCE labeler and the real label app as processes on a private DDS domain, the test as the
phone (WebSocket, as the page talks to the app) and as the sensor side (labelled features).

The app's view of the classes lags the labeler's (it knows a class once it has seen a labelled sample
of it), so a rule said in the app too could accept what the labeler refuses: the phone said "renaming
to X" and nothing happened. Now the app checks the payload only and the labeler's verdict comes back.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import aiohttp
import numpy as np

from tests.label_page import page_state
from tests.nodes.conftest import node, spin_until
from tinycl_nodes.bus import create_bus
from tinycl_nodes.extractor import FrozenExtractor, model_path

MODEL = "har_elm"
TOKEN = "rename-test-token"
CENTERS = np.random.default_rng(1).normal(0, 3, (2, 64))
NAMES = "class_names:={0: walking, 1: seated}"          # the labeler knows both from its configuration


class Robot:
    """The labeler and the app running; the test publishes labelled features and hears label_status."""

    def __init__(self, bus: Any, base: str, status_topic: str = "label_status") -> None:
        self.bus, self.base = bus, base
        self.hash = FrozenExtractor(model_path(MODEL)).hash
        self.features = bus.create_publisher("features", "Features", "reliable")
        self.status: list[dict[str, Any]] = []
        bus.create_subscription(status_topic, "std_msgs/msg/String", lambda m: self.status.append(json.loads(m.data)),
                                "reliable")
        self.stamp = time.time_ns()
        self.labeler: Any = None        # its NodeProcess, where robot() started it

    def learn(self, cls: int, n: int = 2) -> None:
        """Labelled samples of ``cls``: the labeler passes them on ``labeled`` with the class name, the app hears it."""
        Features, Header, Time = (self.bus.msg(t) for t in ("Features", "std_msgs/msg/Header",
                                                            "builtin_interfaces/msg/Time"))
        for _ in range(n):
            self.stamp += 1000
            x = (CENTERS[cls] + np.random.default_rng(self.stamp % 1000).normal(0, 0.1, 64)).astype(np.float32)
            self.features.publish(Features(header=Header(stamp=Time(sec=self.stamp // 10**9,
                                                                    nanosec=self.stamp % 10**9)),
                                           data=x, extractor_hash=self.hash, sample_id=self.stamp % 10**6,
                                           true_label=cls, labelled=True))

    def app_classes(self) -> dict[int, str]:
        return {c["id"]: c["name"] for c in page_state(self.base, TOKEN, timeout_s=5)["classes"]}

    def wait_app_knows(self, classes: dict[int, str], timeout_s: float = 20.0) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and self.app_classes() != classes:
            time.sleep(0.1)
        assert self.app_classes() == classes

    def wait_online(self, timeout_s: float = 20.0) -> None:
        """Until the app has discovered the labeler's readers: before, it refuses to send ("the robot is
        unreachable"), and a phone acting at once got that instead of the reply it waited for."""
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            req = urllib.request.Request(self.base + "/api/state", headers={"X-Tinycl-Token": TOKEN})
            with urllib.request.urlopen(req, timeout=5) as r:
                if json.loads(r.read())["robot"]["online"]:
                    return
            time.sleep(0.1)
        raise AssertionError(f"the label app did not see the labeler within {timeout_s:.0f} s")

    def status_of(self, request_id: str) -> dict[str, Any]:
        """The labeler's own label_status for a request id (what the app passed on must be this)."""
        assert spin_until(self.bus, lambda: any(s["request_id"] == request_id for s in self.status), 10), self.status
        return next(s for s in self.status if s["request_id"] == request_id)


def labeler_node(domain: int, tmp_path, *params: str, remaps: tuple[str, ...] = ()):
    """The TinyRCE labeler on ``domain``, its state in ``tmp_path/labeler`` (a restart restores it)."""
    return node("labeler", domain, f"model:={MODEL}", "preset:=rce", NAMES, f"state_dir:={tmp_path / 'labeler'}",
                "ask_policy:=each", *params, remaps=remaps)


def app_node(domain: int, tmp_path, *params: str):
    """The label app on ``domain`` (any free port unless ``params`` say ``port:=``), its state in ``tmp_path/app``."""
    return node("label_app", domain, "host:=127.0.0.1", "port:=0", f"token:={TOKEN}", f"state_dir:={tmp_path / 'app'}",
                "qr:=false", *params)


@contextmanager
def robot(domain: int, tmp_path, *app_params: str, verdicts_heard: bool = True) -> Iterator[Robot]:
    """The labeler and the app (with ``app_params`` beside the test's own) on ``domain``. Not ``verdicts_heard``: the
    labeler's two topics of verdicts, ``label_status`` and ``label_closed``, remapped under ``unheard/``, where the app
    does not listen (the test does)."""
    bus = create_bus("phone_side", backend="dds", dds_config="loopback", domain=domain)
    remaps = () if verdicts_heard else ("label_status:=unheard/label_status", "label_closed:=unheard/label_closed")
    status_topic = "label_status" if verdicts_heard else "unheard/label_status"
    try:
        with labeler_node(domain, tmp_path, remaps=remaps) as labeler, app_node(domain, tmp_path, *app_params) as app:
            port = re.search(r"http://127\.0\.0\.1:(\d+)", app.wait_for_line("label app on", 30)).group(1)
            r = Robot(bus, f"http://127.0.0.1:{port}", status_topic)
            r.labeler = labeler
            assert spin_until(bus, lambda: r.features.get_subscription_count() > 0, 20), labeler.lines[-10:]
            r.wait_online()
            yield r
            assert "Traceback" not in "\n".join(labeler.lines + app.lines)
    finally:
        bus.shutdown()


def rename(robot: Robot, class_id: int, name: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """As the phone: send the rename, see "renaming to …", then the verdict (and the class lists meanwhile)."""

    async def go() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with aiohttp.ClientSession(headers={"X-Tinycl-Token": TOKEN}) as s:
            ws = await s.ws_connect(robot.base + "/ws")
            assert (await ws.receive_json(timeout=5))["type"] == "snapshot"
            await ws.send_json({"type": "rename", "class_id": class_id, "name": name})
            classes: list[dict[str, Any]] = []
            reply = await ws.receive_json(timeout=5)
            while reply["type"] == "classes":                # a labelled sample seen meanwhile
                classes.append(reply)
                reply = await ws.receive_json(timeout=5)
            assert reply == {"type": "ok", "class_name": f"renaming to {name}…"}, reply
            while True:
                m = await ws.receive_json(timeout=15)        # the app says "unanswered" after 10 s
                if m["type"] == "rename":
                    await asyncio.sleep(0.5)                    # class_renamed may come just after the verdict
                    while not ws.closed:
                        try:
                            later = await ws.receive_json(timeout=0.2)
                        except asyncio.TimeoutError:
                            break
                        classes += [later] if later["type"] == "classes" else []
                    await ws.close()
                    return m, classes
                classes += [m] if m["type"] == "classes" else []

    return asyncio.run(asyncio.wait_for(go(), 30))


def test_a_rename_to_a_name_another_class_has_is_refused_with_the_labelers_words(domain, tmp_path):
    with robot(domain, tmp_path) as r:
        r.learn(0)
        r.learn(1)
        r.wait_app_knows({0: "walking", 1: "seated"})
        said, _ = rename(r, 1, "WALKING")
        labeler_said = r.status_of(said["request_id"])
    assert labeler_said["status"] == "refused"
    assert labeler_said["message"] == "cannot rename class 1 to 'WALKING': class 0 has that name"
    assert said["status"] == "refused" and said["class_id"] == 1
    assert said["message"] == "The robot refused the rename: cannot rename class 1 to 'WALKING': class 0 has that name"


def test_a_rename_the_apps_stale_view_allows_is_refused_on_the_phone(domain, tmp_path):
    """The app has seen class 0 only; the labeler knows class 1 as "seated" (its configuration). Renaming 0 to
    "Seated" looked fine to the app's copy of the rule: the phone said "renaming to Seated" and nothing came."""
    with robot(domain, tmp_path) as r:
        r.learn(0)
        r.wait_app_knows({0: "walking"})
        said, _ = rename(r, 0, "Seated")
        assert r.status_of(said["request_id"])["status"] == "refused"
        assert r.app_classes() == {0: "walking"}
    assert said["status"] == "refused"
    assert said["message"] == "The robot refused the rename: cannot rename class 0 to 'Seated': class 1 has that name"


def test_an_accepted_rename_reaches_the_phone_and_the_class_list(domain, tmp_path):
    """Accepted: the verdict names the labeler's clean name and the class list follows (class_renamed) — also
    for a class the labeler knows and the app has not heard of yet (the app's copy of the rule refused that)."""
    with robot(domain, tmp_path) as r:
        r.learn(0)
        r.wait_app_knows({0: "walking"})
        said, classes = rename(r, 0, "  strolling ")
        assert (said["status"], said["class_id"], said["name"]) == ("renamed", 0, "strolling")
        assert said["message"] == "Renamed class 0 to strolling"
        assert r.status_of(said["request_id"])["class_name"] == "strolling"
        assert {(c["id"], c["name"]) for c in classes[-1]["classes"]} == {(0, "strolling")}
        r.wait_app_knows({0: "strolling"})
        said, _ = rename(r, 1, "sitting")
        assert (said["status"], said["name"]) == ("renamed", "sitting")
        r.learn(1)
        r.wait_app_knows({0: "strolling", 1: "sitting"})
