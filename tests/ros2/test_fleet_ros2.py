"""Fleet devices on a real ROS 2 Humble: `ros2 launch tinyndc` + `ros2 run tinycl_nodes mqtt_bridge`
(rclpy) against a real mosquitto (TLS, client certificates, ACL) and the federated aggregator.

A device's learned head leaves through the bridge, the aggregator closes a round, and the fleet's
global head comes back over rclpy (latched) into the learner, which merges it — the path
`make demo-fleet` proves on the dds backend, here through rcl: with the shipped fleet
configuration (CWR*, `blend`), and with the default preset (streaming LDA) in the bridge's exact
mode (`add`), where two devices each receive what the other learned."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from tests.ros2.conftest import Proc, Ros, params_file
from tinycl_nodes.core.federated import snapshot_from_state
from tinycl_nodes.fleet.aggregator import Aggregator, AggregatorParams
from tinycl_nodes.fleet.broker import Broker, BrokerSetup, current_user, free_port, generate
from tinycl_nodes.storage import load_states

STREAM = 300
FLEET = "lab"


@pytest.fixture
def fleet(ros):
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.fail("mosquitto is not installed: run tools/mosquitto/install.sh (make system-deps)")
    # a throwaway broker in pytest's private (0700) folder: it runs as whoever runs the test
    setup = generate(ros.tmp / "broker", FLEET, ["robot1", "robot2"], port=free_port(), user=current_user())
    broker = Broker(setup).start()
    yield setup
    ros.stop_all()
    broker.stop()


def _device(ros: Ros, setup: BrokerSetup, device: str, graph_config: str, sections: dict,
            bridge: list[str]) -> tuple[Proc, Proc, Path]:
    """One device: the TinyNDC graph under ros2 launch (staying up after its replay) and its bridge."""
    out, state = ros.tmp / f"metrics_{device}.json", ros.tmp / "state" / device
    sections = {**sections, "/**": {"state_dir": str(state), **sections.get("/**", {})},
                "sensor": {"stream_length": STREAM, "wait_for_truth_subscribers": 3,   # extractor, metrics, learner
                           **sections.get("sensor", {})},
                "metrics": {"out": str(out), "exit_when_done": False}}
    pf = params_file(ros.tmp, graph_config, **sections).rename(ros.tmp / f"{device}.yaml")
    ns = f"/{device}/tinycl"
    launch = ros.start("ros2", "launch", "tinycl_nodes", "tinyndc.launch.py", f"namespace:={ns}",
                       f"params_file:={pf}", name=f"ros2 launch tinyndc ({device})")
    link = ros.start("ros2", "run", "tinycl_nodes", "mqtt_bridge", "--ros-args", "-r", f"__ns:={ns}",
                     "--params-file", str(pf), "-p", f"fleet:={FLEET}", "-p", f"device:={device}",
                     "-p", f"broker_dir:={setup.directory}", *bridge, name=f"ros2 run mqtt_bridge ({device})")
    return launch, link, out


def _round(ros: Ros, setup: BrokerSetup, devices: dict[str, tuple[Proc, Proc, Path]], kind: str | None) -> Aggregator:
    """Every device's replay scored and its final head at the aggregator; one round closed (``kind``
    None: the aggregator's default)."""
    for d, (_, _, out) in devices.items():
        ros.wait_until(f"{d}'s replay scored", out.exists, timeout_s=240)
        assert json.loads(out.read_text())["lost"] == 0
    agg = Aggregator(AggregatorParams(fleet=FLEET, broker_dir=setup.directory, model="mnist_0to5_fp32",
                                      min_devices=len(devices), allowed_devices=list(devices),
                                      state_dir=str(ros.tmp / "aggregator"), **({"kind": kind} if kind else {})))
    want = {d: json.loads(out.read_text())["predictions"] for d, (_, _, out) in devices.items()}   # all learned
    # each learner's final head (every sample learned) reaches it through rclpy, the bridge and mosquitto
    ros.wait_until("every device's final head at the aggregator",
                   lambda: all(d in agg.heads and agg.heads[d].n_seen >= want[d] for d in devices), timeout_s=60)
    assert agg.aggregate_now()
    return agg


def test_shipped_fleet_config_a_ros2_device_sends_its_head_and_merges_the_global_one(ros, fleet):
    devices = {"robot1": _device(ros, fleet, "robot1", "fleet", {}, [])}
    agg = _round(ros, fleet, devices, "CWRStar")
    try:
        glob = agg.global_head
        assert glob is not None and sorted(glob.class_ids) == list(range(10))
        launch, bridge, _ = devices["robot1"]
        ros.wait_until("the learner merged the global head",
                       lambda: f"global head round {glob.version} merged (blend)" in launch.text, timeout_s=60)
        assert "handed to the learner" in bridge.text and "Traceback" not in launch.text + bridge.text
        print(f"ros2 device robot1: head of {agg.heads['robot1'].n_seen} samples → round {glob.version} → merged "
              f"(blend) by the rclpy learner")
    finally:
        agg.close()



def test_default_graph_two_ros2_devices_each_end_with_the_head_of_both_devices_data(ros, fleet):
    """The README's fleet commands as they are: config/tinyndc.yaml (preset tinycl, streaming LDA), and
    the bridge and the aggregator with no mode or kind given. The bridge sees an SLDA head and runs
    exact, the learner adds (policy auto), the aggregator's default kind is the default preset's; each
    device then holds exactly the statistics of both devices' learning, and once the model's class statistics
    its head started from (not shared)."""
    seen = {"robot1": [0, 1, 2, 3, 4, 5, 6, 7], "robot2": [0, 1, 2, 3, 4, 5, 8]}
    devices = {d: _device(ros, fleet, d, "tinyndc", {"sensor": {"stream_classes": cs}}, [])
               for d, cs in seen.items()}
    agg = _round(ros, fleet, devices, None)
    try:
        glob = agg.global_head
        assert glob is not None and glob.kind == "StreamingLDA"
        total = {c: int(n) for c, n in zip(glob.class_ids, glob.counts)}
        shared = {d: dict(zip(agg.heads[d].class_ids.tolist(), agg.heads[d].counts.tolist())) for d in devices}
        assert total == {c: shared["robot1"].get(c, 0) + shared["robot2"].get(c, 0) for c in total}
        r1, r2 = shared["robot1"], shared["robot2"]       # 10 labels of each class, then pseudo-labels:
        assert r1[6] > r2[6] + 10 and r2[8] > r1[8] + 10    # 6 was streamed to robot1 only, 8 to robot2
        # the heads started from the model's class statistics, which are not shared (their sum would count them
        # per device): each device holds them once plus the global head
        from tinycl_nodes.core.federated import Moments
        from tinycl_nodes.core.prior_worth import prior_taken, weighed
        from tinycl_nodes.model_prior import shipped_prior

        assert sum(total.values()) < 3000, total           # both devices' samples, not the 36,017 statistics
        for d, (launch, bridge, _) in devices.items():
            ros.wait_until(f"{d}'s learner added round {glob.version}",
                           lambda: f"global head round {glob.version} merged (add)" in launch.text, timeout_s=60)
            assert "fleet mode: exact" in bridge.text and "Traceback" not in launch.text + bridge.text
            state = load_states(ros.tmp / "state" / d / "learner.state")["head"]
            mine = snapshot_from_state(state)
            # the statistics as this device's labelled samples weighed them (core/prior_worth.py)
            taken = prior_taken(state["meta"]["model_prior"])
            assert taken is not False, state["meta"]
            held = (Moments.of(glob) + Moments.of(weighed(shipped_prior(glob.extractor_hash), taken))).snapshot(
                glob.kind, glob.extractor_hash)
            held_counts = {c: int(n) for c, n in zip(held.class_ids, held.counts)}
            assert dict(zip(mine.class_ids.tolist(), mine.counts.tolist())) == held_counts
            order = [list(held.class_ids).index(c) for c in mine.class_ids]
            np.testing.assert_allclose(mine.weights, held.weights[order], rtol=1e-5, atol=1e-5)
            print(f"ros2 device {d}: {sum(shared[d].values())} samples shared, round {glob.version} added: its "
                  f"head holds both devices' {sum(total.values())}")
    finally:
        agg.close()
