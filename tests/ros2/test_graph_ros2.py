"""The TinyNDC graph on a real ROS 2 Humble: colcon build, ros2 launch, params, remaps, lifecycle,
and a graph mixing rclpy nodes with dds-backend nodes."""

from __future__ import annotations

import json
import re
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.ros2.conftest import STREAM, Proc, diagnostics, params_file
from tinycl_nodes.graphs import GRAPHS, MANAGED

ROOT = Path(__file__).resolve().parents[2]


def echo_diagnostics(ros) -> Proc:
    """``ros2 topic echo /diagnostics`` (the ROS 2 tool, the type named: it need not wait to discover it) in the
    background: ``diagnostics(proc.text)`` reads what it printed."""
    return ros.start("ros2", "topic", "echo", "/diagnostics", "diagnostic_msgs/msg/DiagnosticArray",
                     name="ros2 topic echo /diagnostics")


def check_diagnostics(echo, nodes: set[str], timeout_s: float = 30.0) -> dict[str, list[dict]]:
    """Until every one of ``nodes`` (fully qualified names) has said its health on /diagnostics, then stop the echo:
    each at level OK with the values every node gives, from this host; what each said."""
    import socket

    seen = lambda: (lambda d: d if nodes <= set(d) else None)(diagnostics(echo.text))  # noqa: E731
    t0 = time.monotonic()
    try:
        got = echo.proc.poll() is None and seen() or None
        end = t0 + timeout_s
        while got is None and time.monotonic() < end and echo.proc.poll() is None:
            time.sleep(0.5)
            got = seen()
        assert got, f"/diagnostics: not every one of {sorted(nodes)} heard; echo said:\n{echo.text[-3000:]}"
    finally:
        echo.stop()
    print(f"/diagnostics: {len(nodes)} nodes heard, {time.monotonic() - t0:.1f} s waited for them")
    for name in nodes:
        for st in got[name]:
            assert st["level"] == 0 and st["message"] == "OK", (name, st)
            assert st["hardware_id"] == socket.gethostname(), st
            assert {"uptime_s", "messages_received", "bad_input_dropped"} <= set(st["values"]), st
            assert st["values"]["bad_input_dropped"] == "0", st
    return got


def test_colcon_build_installs_every_executable(ros2_ws):
    ws = Path(ros2_ws["TINYCL_WS"])
    installed = {p.name for p in (ws / "install" / "lib" / "tinycl_nodes").iterdir()}
    assert installed == {p.name for p in (ROOT / "scripts").iterdir()} | {"tinycl"}   # + the CLI (CMakeLists.txt)
    assert set(GRAPHS["tinyndc"]) | set(GRAPHS["tinyrce"]) | {"board", "mqtt_bridge", "aggregator"} <= installed
    assert (ws / "install" / "share" / "tinycl_nodes" / "launch" / "tinyndc.launch.py").is_file()
    print(f"colcon build: {ros2_ws['TINYCL_COLCON_BUILD_S']} s")


def test_tinycl_runs_from_a_colcon_install_as_the_readme_shows(ros):
    """Built with colcon and ``install/setup.bash`` sourced, there was no ``tinycl`` (README's ``tinycl pair``,
    ``tinycl state``, ``tinycl launch``): CMake installs no console script, and ``tinycl launch`` looked for its
    parameter files beside the installed package. Now ``tinycl`` is in install/bin (on the PATH) and in
    lib/tinycl_nodes (``ros2 run tinycl_nodes tinycl``), and the launcher reads share/tinycl_nodes/config."""
    from tinycl_nodes.label_app.pairing import Pairing

    install = Path(ros.env["TINYCL_WS"]) / "install"
    assert shutil.which("tinycl", path=ros.env["PATH"]) == str(install / "bin" / "tinycl")
    folder = Path(ros.env["ROS_HOME"]) / "tinycl" / "robot1" / "tinycl"     # a label app's, under ros2 launch
    folder.mkdir(parents=True)
    pairing = Pairing(folder)
    pairing.info = {"url": "https://robot1.local:8080/#pair"}
    pairing.save()
    for cmd in (["tinycl"], ["ros2", "run", "tinycl_nodes", "tinycl"]):
        out = ros.run(*cmd, "pair", "--namespace", "/robot1/tinycl", "--plain")
        assert "label app: open https://robot1.local:8080/#pair" in out.stdout, out.stdout
    out = ros.run("tinycl", "state", "--namespace", "/robot1/tinycl", check=False)   # the same folder, nothing learned
    assert out.returncode == 2 and f"no learned state in {folder} " in out.stderr, out.stderr[-2000:]
    out = ros.run("tinycl", "launch", "tinyndc", "-p", "learner.nope:=1", check=False)   # refused before any start
    assert out.returncode == 2 and "node learner has no parameter 'nope'" in out.stderr, out.stderr[-2000:]


def test_managed_nodes_match_the_graph_list():
    """graphs.MANAGED (read by launch files under ROS 2's python) names exactly the lifecycle nodes."""
    import importlib

    from tinycl_nodes.nodes.runner import Node

    managed = set()
    for name in {n for g in GRAPHS.values() for n in g}:
        mod = importlib.import_module(f"tinycl_nodes.nodes.{name}")
        classes = [c for c in vars(mod).values()
                   if isinstance(c, type) and issubclass(c, Node) and c.__module__ == mod.__name__]
        assert classes, name
        if any(c.managed for c in classes):
            managed.add(name)
    assert managed == set(MANAGED)


def _ctrl_c_while_the_nodes_start(ros, pf: Path) -> None:
    """Ctrl-C (SIGINT to the launch's process group, as a terminal sends it) once every node process is started
    and still importing: ros2 launch exits 0 without a traceback or a dead node, and no node process is left.

    Broken before: each node still importing printed a KeyboardInterrupt traceback (or a cyclonedds
    ``RuntimeError: Error calling __set_name__``) and died with -2, and launch_ros's ``change_state`` thread, waiting
    for a lifecycle node's service, raised "cannot use Destroyable because destruction was requested": exit code 1."""
    import os
    import signal

    launch = ros.start("ros2", "launch", "tinycl_nodes", "tinyndc.launch.py", "namespace:=/robot1/tinycl",
                       f"params_file:={pf}", name="ros2 launch tinyndc (Ctrl-C)")
    n = len(GRAPHS["tinyndc"])
    started = ros.wait_until(f"{n} node processes started", lambda: (lambda s: s if len(s) == n else None)(
        [int(m) for m in re.findall(r"process started with pid \[(\d+)\]", launch.text)]), timeout_s=60, every_s=0.1)
    time.sleep(1.0)   # past each interpreter's own start-up (site): into the nodes' imports
    t0 = time.monotonic()
    os.killpg(launch.proc.pid, signal.SIGINT)
    code = launch.wait(30)
    launch._t.join(timeout=2)
    assert code == 0, launch.text[-3000:]
    for bad in ("Traceback", "process has died", "Caught exception", "Error calling"):
        assert bad not in launch.text, launch.text[-3000:]
    assert not [pid for pid in started if Path(f"/proc/{pid}").exists()], launch.text[-3000:]
    print(f"Ctrl-C {1.0:.1f} s after the nodes' start: ros2 launch exited 0 in {time.monotonic() - t0:.1f} s")


def test_launch_replay_ends_by_itself_with_the_in_process_predictions(ros, reference):
    """ros2 launch: all nodes listed under the namespace, ros2 param get/set, the replay ends the
    launch by itself and its predictions equal the in-process run's, sample for sample — after a first launch on
    the same state was stopped by Ctrl-C while its nodes were starting (``_ctrl_c_while_the_nodes_start``), and with
    ``use_sim_time:=true`` and no /clock: the nodes' timers are wall time (with the node's clock they never fired:
    the metrics node never scored, and the launch ran until killed)."""
    out, state, export = ros.tmp / "metrics.json", ros.tmp / "replay_state", ros.tmp / "replay_export"
    pf = params_file(ros.tmp, **{"/**": {"state_dir": str(state)}}, sensor={"stream_length": STREAM, "rate_hz": 25.0},
                     metrics={"out": str(out)}, exporter={"out_dir": str(export), "period_s": 0.0})
    tmp = ros.tmp / "tmpdir"         # the launch's own TMPDIR: /tmp is shared with whatever else runs here
    tmp.mkdir()
    ros.env["TMPDIR"] = str(tmp)
    _ctrl_c_while_the_nodes_start(ros, pf)
    t0 = time.monotonic()
    launch = ros.start("ros2", "launch", "tinycl_nodes", "tinyndc.launch.py", "namespace:=/robot1/tinycl",
                       f"params_file:={pf}", "use_sim_time:=true", name="ros2 launch tinyndc")
    expected = {f"/robot1/tinycl/{n}" for n in GRAPHS["tinyndc"]}
    listed = ros.wait_until("all nodes in ros2 node list", lambda: expected <= ros.node_list(), timeout_s=60)
    assert listed
    echo = echo_diagnostics(ros)        # read while the params are checked: every node's health, the ROS way

    ro = ros.run("ros2", "param", "set", "/robot1/tinycl/learner", "preset", "tinyndc", check=False)
    assert "Setting parameter failed" in ro.stdout + ro.stderr and "read-only" in (ro.stdout + ro.stderr).lower(), ro
    desc = ros.run("ros2", "param", "describe", "/robot1/tinycl/learner", "preset").stdout
    assert "one of: tinyndc, tinycl, supervised, rce" in desc and "Read only: true" in desc, desc
    from tinycl_nodes.nodes.learner import LearnerParams
    assert f"Description: {LearnerParams.model_fields['preset'].description}" in desc, desc
    dump = ros.run("ros2", "param", "dump", "/robot1/tinycl/learner", "--print").stdout
    assert "publish_every: 500" in dump and "preset: tinycl" in dump, dump
    # the sensor's rate last: at 200 Hz the replay (and the graph) ends within seconds
    get = ros.run("ros2", "param", "get", "/robot1/tinycl/sensor", "rate_hz").stdout
    assert "Double value is: 25.0" in get, get
    for value in ("-5.0", "1.0e+308"):    # below the range, and absurd (at most 100,000 samples/s)
        bad = ros.run("ros2", "param", "set", "/robot1/tinycl/sensor", "rate_hz", value, check=False)
        assert "Setting parameter failed" in bad.stdout + bad.stderr, bad
    # a value set is the value got: checked at a rate that keeps the replay going (at 200 Hz the sensor had finished
    # its data, and its node had gone, before a get found it: "Node not found", a fresh clone's run of 2026-12-05)
    ok = ros.run("ros2", "param", "set", "/robot1/tinycl/sensor", "rate_hz", "24.0").stdout
    assert "Set parameter successful" in ok, ok
    assert "Double value is: 24.0" in ros.run("ros2", "param", "get", "/robot1/tinycl/sensor", "rate_hz").stdout
    health = check_diagnostics(echo, expected)
    last = {name.rsplit("/", 1)[1]: sts[-1]["values"] for name, sts in health.items()}
    for name in MANAGED:
        assert last[name]["lifecycle_state"] == "active", last[name]
    for name in ("learner", "labeler", "exporter"):
        assert last[name]["state_file"] == str(state / f"{name}.state") and "last_checkpoint" in last[name], last
    assert int(last["learner"]["samples_learned"]) > 0 and int(last["learner"]["classes_known"]) > 0, last
    assert int(last["learner"]["messages_received"]) > 0 and int(last["sensor"]["samples_published"]) > 0, last
    assert last["labeler"]["initialised"] == "yes", last["labeler"]
    ok = ros.run("ros2", "param", "set", "/robot1/tinycl/sensor", "rate_hz", "200.0").stdout
    assert "Set parameter successful" in ok, ok

    assert launch.wait(180) == 0
    wall = time.monotonic() - t0
    left = [p.name for p in tmp.iterdir() if p.name.startswith(("tinycl_", "launch_params_"))]
    assert not left, left    # no parameter file left behind (ros_launch._launch_parameters)
    final = launch.wait_for_line("final: accuracy")
    result = json.loads(out.read_text())
    graph_preds = np.asarray(result["stream_predictions"])
    ref = np.asarray(reference["predictions"])
    assert graph_preds.shape == ref.shape and int((graph_preds == ref).sum()) == ref.size
    assert result["lost"] == 0 and result["predictions"] == 100 + STREAM
    assert result["accuracy"] == pytest.approx(reference["accuracy"], abs=1e-6)
    assert f"{reference['accuracy']:.2f}%" in final
    assert "process has finished cleanly" in launch.text
    assert "the metrics node has ended (the replay is scored): stopping the graph" in launch.text
    # the exporter (exporting only what it holds at its stop) wrote the head the learner published last, as it stopped
    import onnxruntime as ort

    from tinycl_nodes.storage import load_states
    head = load_states(next(state.rglob("learner.state")))["head"]
    meta = ort.InferenceSession(str(export / "head.onnx"),
                                providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert (int(meta["version"]), int(meta["n_seen"])) == (head["meta"]["published_version"],
                                                           head["meta"]["n_seen"]), (meta, head["meta"])
    print(f"ros2 launch tinyndc, {100 + STREAM} samples: {wall:.1f} s wall, accuracy {result['accuracy']:.2f}% "
          f"= in-process {reference['accuracy']:.2f}%, identical predictions {ref.size}/{ref.size}")


def test_unknown_parameter_names_the_closest_valid_one(ros):
    p = ros.run("ros2", "run", "tinycl_nodes", "learner", "--ros-args", "-p", "publish_evry:=3", check=False)
    assert p.returncode == 2
    assert "learner: unknown parameter 'publish_evry' (did you mean 'publish_every'?)" in p.stderr
    assert "Traceback" not in p.stderr


def test_remapped_image_topic_on_both_backends(ros):
    """``-r image:=/camera/image_raw`` reaches rcl under rclpy and the same rule applies on dds."""
    ros.start("ros2", "run", "tinycl_nodes", "extractor", "--ros-args", "-r", "__ns:=/r2",
              "-r", "image:=/camera/image_raw", "-p", "autostart:=true", name="rclpy extractor")
    ros.start(sys.executable, "-m", "tinycl_nodes.nodes.extractor", "--ros-args", "-r", "__ns:=/r3",
              "-r", "__node:=extractor_dds", "-r", "image:=/camera/image_raw", dds=True, name="dds extractor")

    def subscribers() -> int:
        info = ros.run("ros2", "topic", "info", "/camera/image_raw", check=False).stdout
        m = re.search(r"Subscription count: (\d+)", info)
        return int(m.group(1)) if m and int(m.group(1)) >= 2 else 0

    assert ros.wait_until("two subscribers on /camera/image_raw", subscribers, timeout_s=45) == 2
    topics = ros.run("ros2", "topic", "list").stdout.split()
    assert "/r2/image" not in topics and "/r3/image" not in topics


def test_lifecycle_transitions_keep_state(ros, fp32_extractor):
    """deactivate holds samples and loses nothing; cleanup saves; configure restores the head."""
    from tinycl_nodes.bus import create_bus
    from tinycl_nodes.interfaces import as_sequence

    state = ros.tmp / "state"
    learner = ros.start("ros2", "run", "tinycl_nodes", "learner", "--ros-args", "-r", "__ns:=/lc",
                        "-p", f"state_dir:={state}", "-p", "preset:=supervised", "-p", "publish_every:=1",
                        name="learner")
    node = "/lc/learner"
    ros.wait_until("the learner's lifecycle services",
                   lambda: "unconfigured" in ros.run("ros2", "lifecycle", "get", node, check=False).stdout)
    for t in ("configure", "activate"):
        assert "Transitioning successful" in ros.run("ros2", "lifecycle", "set", node, t).stdout
    bus = create_bus("lc_tester", "/lc", backend="dds", domain=ros.domain, dds_config="loopback")
    try:
        LF, F = bus.msg("LabeledFeatures"), bus.msg("Features")
        pub = bus.create_publisher("labeled", LF, "reliable")
        heads: list = []
        bus.create_subscription("head", "Head", heads.append, "latched")
        rng = np.random.default_rng(0)

        def send(n: int) -> None:
            for i in range(n):
                label = i % 2
                x = rng.normal(label * 3.0, 1.0, fp32_extractor.n_features).astype(np.float32)
                pub.publish(LF(features=F(data=as_sequence(x, "f"), extractor_hash=fp32_extractor.hash,
                                          sample_id=i), label=label, confidence=1.0, source=LF.GROUND_TRUTH))

        def n_seen(k: int):
            bus.spin_once(0.2)
            return heads and int(heads[-1].n_seen) == k

        ros.wait_until("the learner's subscription", lambda: pub.get_subscription_count() > 0)
        send(6)
        ros.wait_until("6 samples learned", lambda: n_seen(6))
        assert "Transitioning successful" in ros.run("ros2", "lifecycle", "set", node, "deactivate").stdout
        assert "inactive" in ros.run("ros2", "lifecycle", "get", node).stdout
        send(4)
        bus.spin(2.0)
        assert int(heads[-1].n_seen) == 6                 # paused: nothing learned meanwhile …
        ros.run("ros2", "lifecycle", "set", node, "activate")
        ros.wait_until("the held samples learned", lambda: n_seen(10))   # … and nothing lost
        for t in ("deactivate", "cleanup"):
            assert "Transitioning successful" in ros.run("ros2", "lifecycle", "set", node, t).stdout
        assert (state / "learner.state").is_file()
        assert "unconfigured" in ros.run("ros2", "lifecycle", "get", node).stdout
        ros.run("ros2", "lifecycle", "set", node, "configure")
        learner.wait_for_line("restored head (2 classes, 10 samples)")
        # kill -9 between checkpoints: what came after the last one is learned again from the journal (the first head
        # version after the restore takes a checkpoint, so that one holds 11 or, not written yet, 10)
        ros.run("ros2", "lifecycle", "set", node, "activate")
        send(3)
        ros.wait_until("13 samples learned", lambda: n_seen(13))
        assert learner.stop(signal.SIGKILL) == -signal.SIGKILL
        again = ros.start("ros2", "run", "tinycl_nodes", "learner", "--ros-args", "-r", "__ns:=/lc",
                          "-p", f"state_dir:={state}", "-p", "preset:=supervised", "-p", "autostart:=true",
                          name="learner again")
        line = again.wait_for_line("restored head (2 classes, 13 samples) from")
        assert re.search(r"and its journal \([23] messages learned again\)", line), line
        # shutdown: finalized for good. The node went on learning under that state; now it saves and exits 0
        ros.wait_until("the learner started again", lambda: "active" in ros.run("ros2", "lifecycle", "get", node,
                                                                                check=False).stdout)
        send(2)
        ros.wait_until("15 samples learned", lambda: n_seen(15))
        assert "Transitioning successful" in ros.run("ros2", "lifecycle", "set", node, "shutdown").stdout
        assert again.wait(30) == 0
        assert "shutdown: the node is finalized: saving its state and exiting" in again.text, again.text[-2000:]
        last = ros.start("ros2", "run", "tinycl_nodes", "learner", "--ros-args", "-r", "__ns:=/lc",
                         "-p", f"state_dir:={state}", "-p", "preset:=supervised", "-p", "autostart:=true",
                         name="learner last")
        line = last.wait_for_line("restored head (2 classes, ")
        assert "restored head (2 classes, 15 samples) from" in line and "journal" not in line, line  # saved, not replayed
    finally:
        bus.shutdown()
    assert last.stop() == 0


def test_mixed_graph_rclpy_dds_and_board_learns_identically(ros, reference):
    """sensor, extractor and metrics under rclpy; labeler, learner, exporter on the dds backend; the
    board (the C core, dds backend) learning from the same labels beside them: the learner's
    predictions equal the in-process run's, and the board predicts every sample."""
    from tinycl_nodes.bus import create_bus

    out = ros.tmp / "metrics.json"
    # `labeled` has two readers here, the learner and the board: the labeler waits for both, or on a loaded
    # machine it starts before it has discovered the board and the board never gets the first samples
    pf = params_file(ros.tmp, sensor={"stream_length": STREAM}, metrics={"out": str(out)},
                     labeler={"wait_for_subscribers": 2})
    common = ["--ros-args", "--params-file", str(pf), "-r", "__ns:=/mixed"]
    tester = create_bus("mixed_tester", "/mixed", backend="dds", domain=ros.domain, dds_config="loopback")
    board_preds: list[int] = []
    tester.create_subscription("board_predictions", "Prediction", lambda m: board_preds.append(m.class_id),
                               "reliable")
    procs = {}
    echo = echo_diagnostics(ros)      # both backends' nodes on /diagnostics, as ROS 2 tools read it
    try:
        for name, dds in (("exporter", True), ("learner", True), ("labeler", True), ("board", True),
                          ("extractor", False), ("metrics", False), ("sensor", False)):
            args = [*common, "-r", f"__node:={name}"]
            if name == "board":
                args += ["-r", "predictions:=board_predictions", "-r", "head:=board_head"]
            if name == "extractor":
                args += ["-p", "autostart:=true"]
            procs[name] = (ros.start(sys.executable, "-m", f"tinycl_nodes.nodes.{name}", *args, dds=True, name=name)
                           if dds else ros.start("ros2", "run", "tinycl_nodes", name, *args, name=name))
        assert procs["metrics"].wait(240) == 0
        try:
            ros.wait_until("the board's predictions", lambda: (tester.spin_once(0.2), len(board_preds) >= 100 + STREAM)[1],
                           timeout_s=90, every_s=0.0)         # the board may trail the graph on a loaded machine
        except AssertionError as exc:
            raise AssertionError(f"{exc}: {len(board_preds)} of {100 + STREAM} came") from None
        health = check_diagnostics(echo, {f"/mixed/{n}" for n in ("learner", "labeler", "board", "exporter",
                                                                   "extractor")})
    finally:
        tester.shutdown()
    for name in ("learner", "board"):                   # dds backend: what it learned, as the rclpy nodes say theirs
        said = health[f"/mixed/{name}"][-1]["values"]
        assert int(said["classes_known"]) >= 6 and said["state_file"].endswith(f"/mixed/{name}.state"), said
    assert health["/mixed/extractor"][-1]["values"]["lifecycle_state"] == "active"   # rclpy, managed
    result = json.loads(out.read_text())
    preds, ref = np.asarray(result["stream_predictions"]), np.asarray(reference["predictions"])
    assert preds.shape == ref.shape and int((preds == ref).sum()) == ref.size
    assert len(board_preds) == 100 + STREAM and procs["board"].proc.poll() is None


def test_launch_with_the_latent_head_learns_on_latents_over_rclpy(ros):
    """`ros2 launch … latent_head: true`: the extractor publishes 1,152 activations per image beside the
    features over rclpy, the learner trains the model's upper layers on them from the labeler's
    pseudo-labels, nothing is lost, and its state and ONNX are the latent head's."""
    import onnxruntime as ort

    from tinycl_nodes.core.latent import LatentUpperHead
    from tinycl_nodes.storage import load_states

    out, state, export = ros.tmp / "metrics.json", ros.tmp / "state", ros.tmp / "export"
    stream = 400
    pf = params_file(ros.tmp, **{"/**": {"latent_head": True, "state_dir": str(state)}},
                     sensor={"stream_length": stream}, metrics={"out": str(out)}, exporter={"out_dir": str(export)})
    launch = ros.start("ros2", "launch", "tinycl_nodes", "tinyndc.launch.py", "namespace:=/robot1/tinycl",
                       f"params_file:={pf}", name="ros2 launch tinyndc latent")
    assert launch.wait(240) == 0
    result = json.loads(out.read_text())
    assert result["lost"] == 0 and result["predictions"] == 100 + stream, result
    assert result["accuracy"] > 85, result                       # chance is 10 %: the latent head learned
    assert "no latent came" not in launch.text and "Traceback" not in launch.text
    head = load_states(next(state.rglob("learner.state")))["head"]
    assert head["kind"] == LatentUpperHead.kind and head["params"]["latent_shape"] == [128, 3, 3]
    assert np.asarray(head["arrays"]["class_seen"]).sum() >= 100 + 0.9 * stream
    sess = ort.InferenceSession(str(export / "head.onnx"), providers=["CPUExecutionProvider"])
    assert [i.name for i in sess.get_inputs()] == ["latent"]
    print(f"ros2 launch with latent_head, {100 + stream} samples: accuracy {result['accuracy']:.2f}%, 0 lost")
