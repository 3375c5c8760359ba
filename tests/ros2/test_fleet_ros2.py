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

import pytest

from tests.ros2.conftest import Proc, Ros, params_file
from tinycl_nodes.fleet.aggregator import Aggregator, AggregatorParams
from tinycl_nodes.fleet.broker import Broker, BrokerSetup, free_port, generate

STREAM = 300
FLEET = "lab"


@pytest.fixture
def fleet(ros):
    if shutil.which("mosquitto") is None and not Path("/usr/sbin/mosquitto").exists():
        pytest.fail("mosquitto is not installed: run tools/mosquitto/install.sh (make system-deps)")
    setup = generate(ros.tmp / "broker", FLEET, ["robot1", "robot2"], port=free_port())
    broker = Broker(setup).start()
    yield setup
    ros.stop_all()
    broker.stop()


def _device(ros: Ros, setup: BrokerSetup, device: str, graph_config: str, sections: dict,
            bridge: list[str]) -> tuple[Proc, Proc, Path]:
    """One device: the TinyNDC graph under ros2 launch (staying up after its replay) and its bridge."""
    out, state = ros.tmp / f"metrics_{device}.json", ros.tmp / "state" / device
    sections = {**sections, "/**": {"state_dir": str(state), **sections.get("/**", {})},
                "sensor": {"stream_length": STREAM, "wait_for_truth_subscribers": 2, **sections.get("sensor", {})},
                "metrics": {"out": str(out), "exit_when_done": False}}
    pf = params_file(ros.tmp, graph_config, **sections).rename(ros.tmp / f"{device}.yaml")
    ns = f"/{device}/tinycl"
    launch = ros.start("ros2", "launch", "tinycl_nodes", "tinyndc.launch.py", f"namespace:={ns}",
                       f"params_file:={pf}", name=f"ros2 launch tinyndc ({device})")
    link = ros.start("ros2", "run", "tinycl_nodes", "mqtt_bridge", "--ros-args", "-r", f"__ns:={ns}",
                     "--params-file", str(pf), "-p", f"fleet:={FLEET}", "-p", f"device:={device}",
                     "-p", f"broker_dir:={setup.directory}", *bridge, name=f"ros2 run mqtt_bridge ({device})")
    return launch, link, out


def _round(ros: Ros, setup: BrokerSetup, devices: dict[str, tuple[Proc, Proc, Path]], kind: str) -> Aggregator:
    """Every device's replay scored and its final head at the aggregator; one round closed."""
    for d, (_, _, out) in devices.items():
        ros.wait_until(f"{d}'s replay scored", out.exists, timeout_s=240)
        assert json.loads(out.read_text())["lost"] == 0
    agg = Aggregator(AggregatorParams(fleet=FLEET, broker_dir=setup.directory, kind=kind, model="mnist_0to5_fp32",
                                      min_devices=len(devices), allowed_devices=list(devices),
                                      state_dir=str(ros.tmp / "aggregator")))
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

