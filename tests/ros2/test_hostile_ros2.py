"""Hostile messages met by nodes under rclpy on the real ROS 2 (rmw_cyclonedds): CDR broken on the wire, and the
message fuzz of tests/reliability over a launched graph.

rmw_cyclonedds (Humble's) hands rclpy a message it could not deserialize as a valid one, filled in up to the fault.
Taken as messages, a LabeledFeatures cut before its name was learned whole, one whose feature count said 2^31 - 1 was
copied into Python (8 GB and some 25 s of CPU for a 400-byte message), and from the second such message on each one
printed rcutils's ten-line "error state is being overwritten" on stderr. The ROS 2 backend now takes every
subscription's samples as bytes and deserializes them itself (``bus/ros2.py``). On the dds backend, Cyclone DDS drops
such a sample before the node and says so in one line."""

from __future__ import annotations

import json
import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.ros2.conftest import STREAM, params_file
from tinycl_nodes.bus import create_bus

HERE = Path(__file__).resolve().parent


@pytest.mark.parametrize("backend", ["rclpy", "dds"])
def test_a_message_broken_on_the_wire_is_one_line_and_is_not_learned(ros, fp32_extractor, backend):
    """From an rclpy publisher, to a learner under rclpy (``ros2 run``) and to one on the dds backend (a robot's graph
    without ROS 2 beside ROS 2 peers)."""
    args = ("--ros-args", "-r", "__ns:=/wf", "-p", "preset:=supervised", "-p", "publish_every:=1",
            "-p", "autostart:=true", "-p", f"state_dir:={ros.tmp / 'state'}")
    learner = (ros.start("ros2", "run", "tinycl_nodes", "learner", *args, name="learner") if backend == "rclpy" else
               ros.start(sys.executable, "-m", "tinycl_nodes.nodes.learner", *args, dds=True, name="learner"))
    bus = create_bus("wf_tester", "/wf", backend="dds", domain=ros.domain, dds_config="loopback")
    heads: list = []
    bus.create_subscription("head", "Head", heads.append, "latched")
    try:
        out = ros.run("python3", str(HERE / "wire_faults.py"), "learner", "--namespace", "/wf",
                      "--hash", fp32_extractor.hash, "--n-features", str(fp32_extractor.n_features), timeout_s=120)
        sent = json.loads(out.stdout.strip().splitlines()[-1])
        ros.wait_until("the last whole sample learned (class 3: every message before it taken)",
                       lambda: (bus.spin_once(0.2), heads and 3 in {c.id for c in heads[-1].classes})[1], timeout_s=60)
    finally:
        bus.shutdown()
    faults = sum(sent["faults"].values())
    said = {"rclpy": "labeled: dropped malformed tinycl_nodes/msg/LabeledFeatures (",            # bus/ros2.py's
            "dds": "deserialization rt/wf/labeled/tinycl_nodes::msg::dds_::LabeledFeatures_ failed"}[backend]  # DDS's
    dropped = [ln for ln in learner.lines if said in ln]
    print(f"{faults} broken messages {sent['faults']}: {len(dropped)} dropped, one line each; learned "
          f"{heads[-1].n_seen} of {sent['whole']} whole ones; e.g. {[d.split('] ', 1)[-1] for d in dropped[:1]]}")
    assert heads[-1].n_seen == sent["whole"] == 6, learner.text[-3000:]
    assert [c.name for c in heads[-1].classes] == ["walking", "seated", "running", "stairs"]
    assert len(dropped) == faults == 20, learner.text[-3000:]
    assert "error state is being overwritten" not in learner.text and "Traceback" not in learner.text
    assert learner.proc.poll() is None
    assert learner.stop() == 0


def test_hostile_messages_over_ros2_change_nothing_the_launched_graph_learns(ros, reference):
    """The message fuzz of tests/reliability, on the real ROS 2: ``ros2 launch tinyndc`` replays its stream while
    3,000 hostile messages come over rclpy on every input topic during 15 s of it, a quarter of them with their CDR
    broken on the wire. No node dies or prints a traceback, each broken one is one line, and the graph predicts every
    sample as the in-process run does, sample for sample: nothing hostile was learned, nothing clean was lost."""
    out, sent_file = ros.tmp / "metrics.json", ros.tmp / "hostile.json"
    pf = params_file(ros.tmp, **{"/**": {"state_dir": str(ros.tmp / "state")}},
                     sensor={"stream_length": STREAM, "rate_hz": 50.0}, metrics={"out": str(out)},
                     exporter={"out_dir": str(ros.tmp / "export"), "period_s": 1.0})
    launch = ros.start("ros2", "launch", "tinycl_nodes", "tinyndc.launch.py", "namespace:=/fz", f"params_file:={pf}",
                       name="ros2 launch tinyndc")
    driver = ros.start("python3", str(HERE / "hostile_driver.py"), "--namespace", "/fz", "--messages", "3000",
                       "--seconds", "15", "--out", str(sent_file), name="hostile driver")
    assert launch.wait(300) == 0, launch.text[-3000:]
    assert driver.wait(120) == 0, driver.text[-3000:]
    sent = json.loads(sent_file.read_text())
    result = json.loads(out.read_text())
    # the hostile ground truths with a class id are truths of samples that never come (no prediction: -2); the
    # sensor's samples, in order, are the rest
    preds, ref = np.asarray(result["stream_predictions"]), np.asarray(reference["predictions"])
    clean = preds[preds != -2]
    malformed = {t: sum(f"{t}: dropped malformed " in ln for ln in launch.lines) for t in sent["broken"]}
    print(f"ros2 launch under {sum(sent['sent'].values())} hostile messages ({sent['seconds']} s, "
          f"{sum(sent['broken'].values())} broken on the wire {sent['broken']}): malformed lines per topic "
          f"{malformed}; {int((clean == ref).sum()) if clean.shape == ref.shape else '-'}/{ref.size} predictions as "
          f"in-process; {result['lost']} truths without a sample")
    assert not sent["unmatched"] and sent["acked"], sent
    for bad in ("Traceback", "process has died", "error state is being overwritten"):
        assert bad not in launch.text, launch.text[-3000:]
    assert all(malformed.values()), malformed           # each topic's broken ones met a reader and were one line
    assert result["predictions"] == 100 + STREAM and result["lost"] == result["stream_samples"] - STREAM, result
    assert clean.shape == ref.shape and int((clean == ref).sum()) == ref.size


def test_broken_service_requests_and_transitions_it_cannot_take_change_nothing_and_crash_nothing(ros):
    """rclpy takes a node's own service requests itself (no ``raw=True`` there): a request broken on the wire, as a
    peer on the domain can write it, reaches rclpy half filled in, as a broken message does. To the real learner
    under ``ros2 run``:

    - SetParameters: a request with one whole parameter (one it has not) and one cut off, one whose name is cut, and
      three whose parameter count says 10^5, 2^24 and 2^31 - 1; and, as ``ros2 service call`` sends it, a value of
      type 99 (also to SetParametersAtomically), which killed the node: rclpy raised in its own callback;
    - ChangeState, the lifecycle's: transitions the active node does not have, as ``ros2 service call`` sends them
      (id 99; configure's id; an unknown label), and on the wire, a label cut short and one whose length says
      2^31 - 1. The first killed the node too.

    And rclpy's own ``/clock`` subscription (the learner runs with ``use_sim_time``): a Clock at a negative time, as
    ``ros2 topic pub`` sends it, raised in rclpy's callback and killed the node; then a valid one.

    Each is answered (rmw_cyclonedds' reply topic; ``success: false`` for the transitions), none changes a parameter
    or the lifecycle state, and the node runs on, small, without a traceback; a transition it has is then taken."""
    from cyclonedds.idl import make_idl_struct
    from cyclonedds.idl.types import sequence

    result = make_idl_struct("Result", "rcl_interfaces::msg::dds_::SetParametersResult_",
                             {"successful": bool, "reason": str})
    # one parameter the learner does not have, as rclpy serializes a request (without CDR's encapsulation header)
    one = bytes.fromhex(ros.run("python3", "-c", (
        "from rclpy.serialization import serialize_message as s\n"
        "from rcl_interfaces.srv import SetParameters as S\n"
        "from rcl_interfaces.msg import Parameter as P, ParameterValue as V\n"
        "print(s(S.Request(parameters=[P(name='not_a_parameter', value=V(type=3, double_value=2.5))])).hex())"
    )).stdout.strip())[4 + 4:]
    set_parameters = {"a whole parameter, then one cut off": struct.pack("<I", 2) + one,
                      "a name cut short": struct.pack("<I", 1) + struct.pack("<I", 40) + b"publish",
                      **{f"a count of {n}": struct.pack("<I", n) + one for n in (10**5, 2**24, 2**31 - 1)}}
    # lifecycle_msgs/Transition: uint8 id, then the label (CDR: aligned to 4)
    change_state = {"a label cut short": bytes([0, 0, 0, 0]) + struct.pack("<I", 40) + b"activat",
                    "a label of 2^31 - 1 bytes": bytes([0, 0, 0, 0]) + struct.pack("<I", 2**31 - 1) + b"deactivate"}
    args = ("--ros-args", "-r", "__ns:=/wf", "-p", "preset:=supervised", "-p", "autostart:=true",
            "-p", f"state_dir:={ros.tmp / 'state'}", "-p", "use_sim_time:=true")
    learner = ros.start("ros2", "run", "tinycl_nodes", "learner", *args, name="learner")
    bus = create_bus("wf_tester", "/wf", backend="dds", domain=ros.domain, dds_config="loopback")
    try:
        ros.wait_until("the learner", lambda: "/wf/learner" in ros.node_list(), 60)
        before = ros.run("ros2", "param", "dump", "/wf/learner").stdout
        got = _raw_requests(ros, bus, "set_parameters", "rcl_interfaces::srv::dds_::SetParameters",
                            {"results": sequence[result]}, list(set_parameters.values()))
        # with a parameter the node takes after it (publish_every, runtime-mutable, set to the value it has)
        typed = [ros.run("ros2", "service", "call", f"/wf/learner/{srv}", f"rcl_interfaces/srv/{kind}",
                         "{parameters: [{name: preset, value: {type: 99}}, "
                         "{name: publish_every, value: {type: 2, integer_value: 500}}]}",
                         timeout_s=30).stdout.strip().splitlines()[-1]
                 for srv, kind in (("set_parameters", "SetParameters"),
                                   ("set_parameters_atomically", "SetParametersAtomically"))]
        said = [ros.run("ros2", "service", "call", "/wf/learner/change_state", "lifecycle_msgs/srv/ChangeState",
                        req, timeout_s=30).stdout.strip().splitlines()[-1]
                for req in ("{transition: {id: 99}}", "{transition: {id: 1}}", "{transition: {label: nonsense}}")]
        changed = _raw_requests(ros, bus, "change_state", "lifecycle_msgs::srv::dds_::ChangeState", {"success": bool},
                                list(change_state.values()))
        # each 3 times: /clock is best-effort, and the first can go out before the learner's reader has matched it
        for clock in ("{clock: {sec: -5}}", "{clock: {sec: 100, nanosec: 5}}"):
            ros.run("ros2", "topic", "pub", "-t", "3", "-r", "5", "/clock", "rosgraph_msgs/msg/Clock", clock,
                    timeout_s=30)
        ros.wait_until("the /clock line", lambda: "/clock: dropped" in learner.text, 10)
        after = ros.run("ros2", "param", "dump", "/wf/learner").stdout
        state = ros.run("ros2", "lifecycle", "get", "/wf/learner").stdout.strip()
        peak_kb = max(int(ln.split()[1]) for p in _process_tree(learner.proc.pid)
                      for ln in Path(f"/proc/{p}/status").read_text().splitlines() if ln.startswith("VmHWM"))
        deactivated = ros.run("ros2", "lifecycle", "set", "/wf/learner", "deactivate").stdout.strip()
        state_then = ros.run("ros2", "lifecycle", "get", "/wf/learner").stdout.strip()
    finally:
        bus.shutdown()
    # seen: the cut-off parameter reaches rclpy nameless and unset, which it answers "successful" (it sets nothing);
    # the counts past the end come as no parameter at all (rmw_cyclonedds sized nothing for them)
    assert [r.successful for r in got[1].results] == [False, True] and [len(got[k].results) for k in (3, 4, 5)] == \
        [0, 0, 0], {k: v.results for k, v in got.items()}
    assert after == before and "preset: supervised" in before, (before, after)
    result = "rcl_interfaces.msg.SetParametersResult(successful={}, reason={!r})"
    assert typed == ["rcl_interfaces.srv.SetParameters_Response(results=["
                     + result.format(False, "ValueError: 99 is not a valid Parameter.Type") + ", "
                     + result.format(True, "") + "])",
                     "rcl_interfaces.srv.SetParametersAtomically_Response(result=" + result.format(False, "") + ")"], typed
    assert "learner/set_parameters: parameter 'preset' refused: ValueError: 99 is not a valid Parameter.Type" in \
        learner.text and "learner/set_parameters_atomically: request refused: ValueError: 99 is not a valid " \
        "Parameter.Type" in learner.text
    assert said == ["lifecycle_msgs.srv.ChangeState_Response(success=False)"] * 3, said
    assert [changed[k].success for k in sorted(changed)] == [False, False], changed
    assert state == "active [3]" and deactivated == "Transitioning successful" and state_then == "inactive [2]", \
        (state, deactivated, state_then)
    assert peak_kb < 1024 * 1024, peak_kb
    assert learner.proc.poll() is None and "Traceback" not in learner.text, learner.text[-3000:]
    assert ("change_state: transition 99 refused: from active the transitions are deactivate (4), shutdown (7)"
            in learner.text), learner.text[-3000:]
    dropped = [ln for ln in learner.lines if "/clock: dropped" in ln]
    assert 1 <= len(dropped) <= 3 and all("/clock: dropped: ValueError: Seconds value must not be negative" in ln
                                          for ln in dropped), dropped
    assert learner.stop() == 0


def _raw_requests(ros, bus, service: str, srv_type: str, reply_fields: dict, bodies: list[bytes]) -> dict[int, object]:
    """Send each of ``bodies`` (a request's CDR without its encapsulation header) to the learner's ``service`` as it
    stands, with rmw_cyclonedds' request header (the client, the request's number), and take the replies by number.
    Cyclone DDS for Python refuses to write bytes that do not deserialize as their type; a struct with one fixed
    array of octets serializes to exactly those bytes, under the request's type name."""
    from cyclonedds.core import Policy, Qos
    from cyclonedds.idl import make_idl_struct
    from cyclonedds.idl.types import array, int64, uint8, uint64
    from cyclonedds.pub import DataWriter
    from cyclonedds.sub import DataReader
    from cyclonedds.topic import Topic
    from cyclonedds.util import duration

    reply = make_idl_struct("Reply", f"{srv_type}_Response_", {"guid": uint64, "seq": int64, **reply_fields})
    reliable = Qos(Policy.Reliability.Reliable(duration(seconds=1)), Policy.History.KeepLast(16))
    replies = DataReader(bus.participant, Topic(bus.participant, f"rr/wf/learner/{service}Reply", reply), qos=reliable)
    got: dict[int, object] = {}
    for seq, body in enumerate(bodies, 1):
        raw = struct.pack("<Qq", 0x7C1, seq) + body
        raw += b"\0" * (-len(raw) % 4)
        request = make_idl_struct("Request", f"{srv_type}_Request_", {"raw": array[uint8, len(raw)]})
        writer = DataWriter(bus.participant, Topic(bus.participant, f"rq/wf/learner/{service}Request", request),
                            qos=reliable)
        ros.wait_until(f"the learner's {service} reader", lambda: writer.get_matched_subscriptions(), 20, 0.05)
        writer.write(request(raw=list(raw)))
        ros.wait_until(f"the reply to {service} {seq}", lambda: got.update({r.seq: r for r in replies.take(16)})
                       or seq in got, 30, 0.1)
    assert sorted(got) == list(range(1, len(bodies) + 1)), sorted(got)
    return got


def _process_tree(pid: int) -> list[int]:
    """pid and its descendants (``ros2 run`` starts the node as its child)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for task in Path(f"/proc/{p}/task").iterdir():
            todo += [int(c) for c in (task / "children").read_text().split()]
    return out
