"""`tinycl launch`: SIGTERM / SIGHUP stop every node cleanly (each saves its state), its temporary
files are removed; a state_dir that is a file stops the launch with an error naming it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from .conftest import ROOT


def children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            out.append(int(stat.parent.name))
    return out


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


class Launch:
    def __init__(self, tmp_path: Path, domain: int, *params: str) -> None:
        (tmp_path / "tmp").mkdir()
        env = {**os.environ, "TMPDIR": str(tmp_path / "tmp"), "ROS_HOME": str(tmp_path / "ros"),
               "ROS_DOMAIN_ID": str(domain), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "tinycl_nodes.cli", "launch", "tinyndc", *params],
                                     cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(ln.rstrip() for ln in self.proc.stderr), daemon=True).start()

    def wait_for(self, text: str, timeout_s: float) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end and not any(text in ln for ln in list(self.lines)):
            assert self.proc.poll() is None, "\n".join(self.lines[-20:])
            time.sleep(0.1)
        assert any(text in ln for ln in list(self.lines)), "\n".join(self.lines[-20:])


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_signal_stops_every_node_and_each_saves(sig, tmp_path, domain):
    launch = Launch(tmp_path, domain, "-p", "preset:=tinycl", "-p", "sensor.rate_hz:=100")
    try:
        launch.wait_for("clusters initialised", 90)          # the labeler learns: the stream runs
        time.sleep(1.0)
        nodes = children(launch.proc.pid)
        assert len(nodes) == 6, nodes
        t_signal = time.time()
        launch.proc.send_signal(sig)
        code = launch.proc.wait(timeout=40)
    finally:
        if launch.proc.poll() is None:
            launch.proc.kill()
    time.sleep(0.5)
    left = [p for p in nodes if alive(p)]
    for p in left:
        os.kill(p, signal.SIGKILL)
    assert left == [], "nodes left running"
    assert code == 0, "\n".join(launch.lines[-20:])
    assert any(f"{sig.name}: stopping" in ln for ln in launch.lines)
    state = tmp_path / "ros" / "tinycl"
    for name in ("learner.state", "labeler.state"):      # each saved on its way out
        assert (state / name).stat().st_mtime >= t_signal, name
    assert not any("Traceback" in ln for ln in launch.lines), "\n".join(launch.lines)
    assert list((tmp_path / "tmp").glob("tinycl-*")) == []   # the launcher's temporary parameter file is gone


def test_state_dir_that_is_a_file_stops_the_launch(tmp_path, domain):
    (tmp_path / "afile").write_text("x")
    launch = Launch(tmp_path, domain, "-p", f"state_dir:={tmp_path / 'afile'}")
    try:
        code = launch.proc.wait(timeout=90)
    finally:
        if launch.proc.poll() is None:
            launch.proc.kill()
    assert code != 0
    assert any("is a file, not a folder" in ln and "afile" in ln for ln in launch.lines), "\n".join(launch.lines)
    assert any("exited with an error: stopping the graph" in ln for ln in launch.lines)
    assert not any("Traceback" in ln for ln in launch.lines), "\n".join(launch.lines)
    assert (tmp_path / "afile").read_text() == "x"


def test_the_label_app_shows_its_pairing_code_on_the_launch_terminal(tmp_path, domain):
    """`tinycl launch tinyrce` on a terminal: the phone's pairing QR code and URL appear there (the nodes were in a
    session of their own, without the terminal, so the label app could not show them)."""
    import re
    import shlex

    env = {**os.environ, "ROS_HOME": str(tmp_path / "ros"), "ROS_DOMAIN_ID": str(domain), "PYTHONUNBUFFERED": "1"}
    cmd = shlex.join([sys.executable, "-m", "tinycl_nodes.cli", "launch", "tinyrce", "--namespace", "/pair",
                      "-p", "label_app.port:=0", "-p", "label_app.host:=127.0.0.1", "-p", "sensor.rate_hz:=5"])
    proc = subprocess.Popen(["script", "-qfec", cmd, "/dev/null"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
    out = b""
    try:
        end = time.monotonic() + 90
        os.set_blocking(proc.stdout.fileno(), False)
        while time.monotonic() < end and not re.search(rb"label app: open \S+token=\S+", out):
            assert proc.poll() is None, out.decode(errors="replace")[-3000:]
            out += proc.stdout.read() or b""
            time.sleep(0.2)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
    text = out.decode(errors="replace")
    assert "Scan with the phone to answer the robot's questions:" in text, text[-3000:]
    assert re.search(r"label app: open https?://127\.0\.0\.1:\d+/\?token=", text), text[-3000:]
    assert "\u2580" in text or "\u2584" in text or "\u2588" in text, text[-3000:]     # the QR code's blocks


def test_nodes_are_stopped_in_turn_sources_first(tmp_path):
    """``stop_processes`` signals the nodes in the reverse of their start order, each once the one before it has
    exited (a sink still runs while its writers send their last messages); a node that ignores SIGTERM delays the
    next by the hand-over time only, and is killed when the grace time is up."""
    from tinycl_nodes.launcher import stop_processes

    log = tmp_path / "log"
    node = ("import signal, sys, time\n"
            "def term(*_):\n"
            "    with open(sys.argv[2], 'a') as f: f.write(f'{sys.argv[1]} term {time.monotonic()}\\n')\n"
            "    if sys.argv[1] == 'hangs': return\n"
            "    time.sleep(0.4)\n"
            "    with open(sys.argv[2], 'a') as f: f.write(f'{sys.argv[1]} exit {time.monotonic()}\\n')\n"
            "    sys.exit(0)\n"
            "signal.signal(signal.SIGTERM, term)\n"
            "print('up', flush=True)\n"
            "while True: time.sleep(0.05)\n")
    names = ("exporter", "learner", "hangs", "sensor")            # start order: sinks first
    procs = {n: subprocess.Popen([sys.executable, "-c", node, n, str(log)], stdout=subprocess.PIPE, text=True)
             for n in names}
    for p in procs.values():
        assert p.stdout.readline().strip() == "up"
    t0 = time.monotonic()
    codes = stop_processes(procs, grace_s=4.0, handover_s=1.0)
    took = time.monotonic() - t0
    events = {(w[0], w[1]): float(w[2]) for w in (ln.split() for ln in log.read_text().splitlines())}
    assert codes == {"exporter": 0, "learner": 0, "hangs": -signal.SIGKILL, "sensor": 0}, codes
    assert events[("sensor", "exit")] <= events[("hangs", "term")]
    assert 0.9 <= events[("learner", "term")] - events[("hangs", "term")] < 3.0     # the hand-over time, not the grace
    assert events[("learner", "exit")] <= events[("exporter", "term")]
    assert 3.9 <= took < 8.0, took                                                   # the grace time, for them all
