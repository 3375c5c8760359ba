"""Parameters as a ROS 2 user hands them back (Humble, rclpy nodes), each once broken:

- what ``ros2 param dump`` writes is taken back by the node (``ros2 run … --params-file``) and by the launch
  (``params_file:=``): "" (not set) and YAML text ('{}', '[320, 200]') were refused by the model;
- ``ros2 param get`` of a YAML-text parameter is its value alone (``0``, not ``0\\n...``);
- a misspelt node section (``lerner:``) ends the launch before any node starts (the learner ran on its defaults).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import yaml

from tests.ros2.conftest import ROOT, params_file
from tinycl_nodes.graphs import GRAPHS


def test_a_dump_is_taken_back_by_the_node_and_by_the_launch(ros):
    pf = params_file(ros.tmp, **{"/**": {"state_dir": str(ros.tmp / "state")}},
                     sensor={"stream_length": 2000, "rate_hz": 5.0}, metrics={"out": str(ros.tmp / "m.json")})
    nodes = GRAPHS["tinyndc"]
    expected = {f"/dp/{n}" for n in nodes}
    launch = ros.start("ros2", "launch", "tinycl_nodes", "tinyndc.launch.py", "namespace:=/dp", f"params_file:={pf}",
                       name="ros2 launch tinyndc")
    ros.wait_until("the graph's nodes", lambda: expected <= ros.node_list(), timeout_s=90)
    for name in ("camera_device", "domain_id"):
        got = ros.run("ros2", "param", "get", "/dp/sensor", name).stdout.strip()
        assert got == {"camera_device": "String value is: 0", "domain_id": "String value is:"}[name], got
    with ThreadPoolExecutor(len(nodes)) as pool:     # at once: each ros2 command spends its seconds on discovery
        dumps = dict(zip(nodes, pool.map(lambda n: ros.run("ros2", "param", "dump", f"/dp/{n}", "--print").stdout,
                                         nodes)))
    assert launch.stop() == 0, launch.text[-3000:]
    for n, text in dumps.items():
        assert f"/dp/{n}:" in text and "..." not in text, text
    learner = yaml.safe_load(dumps["learner"])["/dp/learner"]["ros__parameters"]
    assert (learner["bus"], learner["domain_id"], learner["class_names"], learner["min_confidence"]) == \
        ("", "", "{}", ""), learner          # what was refused when given back
    assert yaml.safe_load(dumps["labeler"])["/dp/labeler"]["ros__parameters"]["picture_size"] == "[320, 200]"
    one, every = ros.tmp / "dump_learner.yaml", ros.tmp / "dump_all.yaml"
    one.write_text(dumps["learner"])
    every.write_text("".join(dumps.values()))

    # the learner alone, started again from its dump
    node = ros.start("ros2", "run", "tinycl_nodes", "learner", "--ros-args", "-r", "__ns:=/dp", "--params-file",
                     str(one), name="ros2 run learner")
    ros.wait_until("/dp/learner", lambda: "/dp/learner" in ros.node_list() or node.proc.poll() is not None,
                   timeout_s=60)
    assert node.proc.poll() is None, node.text[-3000:]
    assert ros.run("ros2", "param", "get", "/dp/learner", "publish_every").stdout.strip() == \
        f"Integer value is: {learner['publish_every']}"
    assert node.stop() == 0 and "error" not in node.text.lower(), node.text[-3000:]

    # the whole graph, launched again from the dump of every node
    launch = ros.start("ros2", "launch", "tinycl_nodes", "tinyndc.launch.py", "namespace:=/dp",
                       f"params_file:={every}", name="ros2 launch tinyndc from its dump")
    ros.wait_until("the graph's nodes from the dump", lambda: expected <= ros.node_list() or
                   launch.proc.poll() is not None, timeout_s=90)
    assert launch.proc.poll() is None, launch.text[-3000:]
    assert ros.run("ros2", "param", "get", "/dp/sensor", "rate_hz").stdout.strip() == "Double value is: 5.0"
    assert launch.stop() == 0, launch.text[-3000:]
    assert "error:" not in launch.text and "Traceback" not in launch.text, launch.text[-3000:]


def test_a_misspelt_node_section_ends_the_launch_and_the_node(ros):
    """``sed 's/^learner:/lerner:/'`` on the parameter file: ros2 launch exited 0 and the learner ran on its
    defaults; ``ros2 run`` with the file did the same."""
    text = (ROOT / "config" / "tinyndc.yaml").read_text()
    bad = ros.tmp / "wt5.yaml"
    bad.write_text(text.replace("\nlearner:", "\nlerner:"))
    launch = ros.start("ros2", "launch", "tinycl_nodes", "tinyndc.launch.py", "namespace:=/wt5",
                       f"params_file:={bad}", name="ros2 launch wt5")
    assert launch.wait(60) == 1, launch.text[-3000:]
    assert f"tinycl: {bad}: section 'lerner': graph tinyndc has no node 'lerner' (did you mean 'learner'?)" \
        in launch.text, launch.text[-3000:]
    assert "process started" not in launch.text, launch.text[-3000:]
    run = ros.run("ros2", "run", "tinycl_nodes", "learner", "--ros-args", "--params-file", str(bad), check=False)
    assert run.returncode == 2, run
    assert run.stderr.strip() == f"error: learner: {bad}: section 'lerner' names no tinycl node " \
                                 "(did you mean 'learner'?)", run.stderr
    # a file shared with other nodes (a camera driver, a second sensor) is not refused by the node alone
    bad.write_text(text + "usb_cam:\n  ros__parameters:\n    video_device: /dev/video0\n"
                   "sensor2:\n  ros__parameters:\n    seed: 3\n")
    node = ros.start("ros2", "run", "tinycl_nodes", "learner", "--ros-args", "-r", "__ns:=/wt6", "--params-file",
                     str(bad), name="ros2 run learner, shared file")
    ros.wait_until("/wt6/learner", lambda: "/wt6/learner" in ros.node_list() or node.proc.poll() is not None,
                   timeout_s=60)
    assert node.proc.poll() is None, node.text[-3000:]


def test_describe_shows_no_refused_value_as_allowed(ros):
    """``ros2 param describe`` of an IMU sensor said "Min value: 0.0" for ``imu_rate_hz`` (``gt=0``: 0 is refused;
    ROS 2's ranges include their ends). Now the first double above 0, and the bound in words; a duration's, 1 ms."""
    node = ros.start("ros2", "run", "tinycl_nodes", "sensor", "--ros-args", "-r", "__ns:=/pd", "-p", "source:=imu",
                     "-p", "imu_topic:=/pd_imu", name="ros2 run sensor (imu)")
    ros.wait_until("/pd/sensor", lambda: "/pd/sensor" in ros.node_list() or node.proc.poll() is not None,
                   timeout_s=60)
    assert node.proc.poll() is None, node.text[-3000:]
    text = ros.run("ros2", "param", "describe", "/pd/sensor", "imu_rate_hz").stdout
    assert "Min value: 0.0" not in text and "Min value: 5e-324" in text, text
    assert "Additional constraints: greater than 0" in text, text
    text = ros.run("ros2", "param", "describe", "/pd/sensor", "imu_max_gap_s").stdout   # a duration: 1 ms at least
    assert "Min value: 0.001" in text and "Max value: 60.0" in text, text
    assert node.stop() == 0, node.text[-3000:]
