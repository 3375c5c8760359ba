"""A soak of a camera graph under ROS 2 (rclpy): what an operator watches over hours, measured.

    source <ws>/install/setup.bash      # ROS 2 Humble and this package built with colcon (with its venv active)
    python3 tools/ros2_camera_soak.py --graph camera --minutes 15 --out soak.json --home /tmp/soak

``--graph camera`` (TinyRCE, people answer) or ``tinyndc`` (clustering): first one replay of ``tinyrce`` /
``tinyndc`` in the namespace, so that the labeler knows classes, then the camera graph
(``camera.launch.py`` / ``tinyndc.launch.py camera_topic:=…``) fed by this script as an rclpy camera at 30 frames/s,
320x240 rgb8, MNIST test digits in turns: ``--moving-s`` of digits each held ``--hold`` frames, then ``--parked-s``
of one digit with pixel noise (sigma 3; a parked robot); ``--novel-s``: every test digit in turn first. This script
also answers each label request with the digit shown, as a person would (one about a frame not its own, a group the
replay formed, is skipped; ``--no-answer``: none), and scores the learner's predictions against the digit of their
frame.

Measured, per node: resident memory (after ``--early-s`` and at the end), open descriptors, CPU seconds, restarts;
the extractor's frames received / processed / dropped (its own lines); each ``*.state`` file's writes (a new inode
or mtime, polled every 50 ms) and bytes, and the journal segments' bytes (each segment's largest size), per minute;
warning and error lines of the launch. Run one soak at a time (it takes the 2 cores of the machines here).
"""

from __future__ import annotations

import argparse
import array
import json
import os
import re
import signal
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image
from tinycl_nodes.datasets import load_mnist
from tinycl_nodes.fleet.broker import free_port
from tinycl_nodes.msg import ClassList, LabelAnswer, LabelRequest, Prediction

NODES = ("extractor", "labeler", "learner", "exporter", "label_app")
DROPS = re.compile(r"frames in the last \d+ s: (\d+) received, (\d+) processed, (\d+) dropped")
W, H = 320, 240


def camera_frame(digit: np.ndarray) -> np.ndarray:
    """A 320x240 RGB frame with an MNIST digit filling its centre."""
    frame = np.zeros((H, W, 3), np.uint8)
    big = cv2.resize(digit, (H, H), interpolation=cv2.INTER_LINEAR)
    frame[:, (W - H) // 2:(W + H) // 2] = big[:, :, None] * np.array([1.0, 0.9, 0.8])
    return frame


def covered_digits(state_file: Path, X: np.ndarray, want: int, radius: float = 0.4) -> np.ndarray:
    """Indices of up to ``want`` test digits whose camera frames the replay's TinyRCE covers (``--scene covered``: a
    moving camera whose every view is passed on, nothing asked), each more than ``radius`` (the labeler's repeat
    radius, 0.05 x 8) from the others."""
    from tinycl_nodes.core.rce import TinyRCE
    from tinycl_nodes.extractor import FrozenExtractor, model_path
    from tinycl_nodes.storage import load_states

    extractor = FrozenExtractor(model_path("mnist_0to5_fp32"))
    rce = TinyRCE(extractor.n_features)
    rce.load_state_dict(load_states(state_file)["rce"])
    chosen: list[int] = []
    kept: list[np.ndarray] = []
    for i in range(len(X)):
        x = extractor.extract_one(camera_frame(X[i])).astype(np.float32)
        if rce.decide_valid(x).wants_label:
            continue
        if kept and np.sqrt(((np.stack(kept) - x) ** 2).sum(1)).min() <= radius:
            continue
        chosen.append(i)
        kept.append(x)
        if len(chosen) == want:
            break
    return np.array(chosen)


def proc_stats(pid: int) -> dict[str, float] | None:
    """RSS (MB), open descriptors and CPU seconds of a process (None: gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1)) / 1024
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, AttributeError):
        return None
    return {"rss_mb": round(rss, 1), "fds": fds, "cpu_s": round(cpu, 1)}


def node_pids(launch_pid: int) -> dict[str, int]:
    """The graph's node processes (children of ``ros2 launch``) by node name."""
    found = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != launch_pid:
            continue
        for arg in cmd:
            m = re.fullmatch(rb"__node:=(\w+)", arg)
            if m and m.group(1).decode() in NODES:
                found[m.group(1).decode()] = int(d.name)
    return found


class Writes:
    """Each state file's writes and the journal's bytes, polled (inode, mtime, size) every 50 ms, per minute."""

    def __init__(self, folder: Path, t0: float) -> None:
        self.folder, self.t0 = folder, t0
        self.seen: dict[str, tuple[int, int]] = {}
        self.journal_max: dict[tuple[str, int], int] = {}
        self.per_min: dict[str, dict[int, list[float]]] = {}    # file kind -> minute -> [writes, bytes]
        self.stop = threading.Event()

    def _add(self, kind: str, writes: int, nbytes: int) -> None:
        minute = int((time.monotonic() - self.t0) // 60)
        cell = self.per_min.setdefault(kind, {}).setdefault(minute, [0, 0])
        cell[0] += writes
        cell[1] += nbytes

    def run(self) -> None:
        while not self.stop.wait(0.05):
            for p in self.folder.glob("*"):
                try:
                    s = p.stat()
                except OSError:
                    continue
                if p.name.endswith(".state"):
                    key = (s.st_ino, s.st_mtime_ns)
                    if self.seen.get(p.name) != key:
                        if p.name in self.seen:
                            self._add(p.name, 1, s.st_size)
                        self.seen[p.name] = key
                elif ".journal-" in p.name:
                    jkey = (p.name, s.st_ino)
                    grown = s.st_size - self.journal_max.get(jkey, 0)
                    if grown > 0:
                        self.journal_max[jkey] = s.st_size
                        self._add(p.name.split(".journal-")[0] + ".journal", 0, grown)

    def summary(self, minutes: float) -> dict[str, dict[str, float]]:
        out = {}
        for kind, cells in sorted(self.per_min.items()):
            writes = sum(c[0] for c in cells.values())
            nbytes = sum(c[1] for c in cells.values())
            out[kind] = {"writes": writes, "MB": round(nbytes / 1e6, 3), "writes_per_min": round(writes / minutes, 2),
                         "MB_per_min": round(nbytes / 1e6 / minutes, 3),
                         "GB_per_day": round(nbytes / 1e9 / minutes * 1440, 2),
                         "per_minute_MB": [round(cells.get(m, [0, 0])[1] / 1e6, 2) for m in range(int(minutes) + 1)],
                         "per_minute_writes": [cells.get(m, [0, 0])[0] for m in range(int(minutes) + 1)]}
        return out


class Launch:
    """``ros2 launch`` in its own session, its output kept (and written to ``log``)."""

    def __init__(self, args: list[str], env: dict[str, str], log: Path) -> None:
        self.lines: list[str] = []
        self.log = open(log, "a")
        self.proc = subprocess.Popen(["ros2", "launch", "tinycl_nodes", *args], env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True,
                                     start_new_session=True)
        self._t = threading.Thread(target=self._read, daemon=True)
        self._t.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
            self.log.write(line)
            self.log.flush()

    def stop(self) -> int:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self._t.join(timeout=5)
        return self.proc.returncode


def replay(graph: str, ns: str, env: dict[str, str], params: Path, log: Path) -> None:
    """One replay in the namespace (it ends by itself): the labeler's classes, the learner's head."""
    launch = Launch([f"{graph}.launch.py", f"namespace:={ns}", f"params_file:={params}"]
                    + ([f"port:={free_port()}"] if graph == "tinyrce" else []), env, log)
    try:
        rc = launch.proc.wait(timeout=900)
    finally:
        launch.stop()
    if rc != 0:
        raise SystemExit(f"the {graph} replay exited {rc}: see {log}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--graph", choices=["camera", "tinyndc"], required=True)
    ap.add_argument("--minutes", type=float, default=15.0)
    ap.add_argument("--home", required=True, help="ROS_HOME of the run (its state folder is under it)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--ns", default="/soak")
    ap.add_argument("--rate", type=float, default=30.0)
    ap.add_argument("--hold", type=int, default=10, help="frames each digit is held while moving")
    ap.add_argument("--moving-s", type=float, default=120.0)
    ap.add_argument("--parked-s", type=float, default=60.0)
    ap.add_argument("--early-s", type=float, default=120.0, help="when the first memory figures are taken")
    ap.add_argument("--replay-samples", type=int, default=500)
    ap.add_argument("--scene", choices=["all", "covered"], default="all",
                    help="all: every test digit in turn; covered: only digits the replay's TinyRCE covers (camera)")
    ap.add_argument("--novel-s", type=float, default=0.0,
                    help="first this long every test digit in turn (questions form) before the scene")
    ap.add_argument("--no-answer", action="store_true", help="answer no label request (nobody at the phone)")
    args = ap.parse_args()
    home = Path(args.home)
    home.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "ROS_HOME": str(home), "PYTHONUNBUFFERED": "1", "RCUTILS_COLORIZED_OUTPUT": "0"}
    import yaml
    share = Path(os.environ["AMENT_PREFIX_PATH"].split(":")[0]) / "share" / "tinycl_nodes" / "config"
    first = "tinyrce" if args.graph == "camera" else "tinyndc"
    doc = yaml.safe_load((share / f"{first}.yaml").read_text())
    doc.setdefault("sensor", {}).setdefault("ros__parameters", {}).update(
        stream_length=args.replay_samples, rate_hz=50.0)
    if first == "tinyrce":
        doc.setdefault("label_app", {}).setdefault("ros__parameters", {}).update(host="127.0.0.1", qr=False)
        # no question left open by the replay: the soak's questions are about its own frames, answered here
        doc.setdefault("labeler", {}).setdefault("ros__parameters", {}).update(max_requests_per_hour=0)
    replay_params = home / "replay.yaml"
    replay_params.write_text(yaml.safe_dump(doc))
    t_replay = time.monotonic()
    replay(first, args.ns, env, replay_params, home / "replay.log")
    t_replay = time.monotonic() - t_replay
    state_dir = home / "tinycl" / args.ns.strip("/")
    camera_params = home / "camera.yaml"
    camera_params.write_text(yaml.safe_dump({"label_app": {"ros__parameters": {"host": "127.0.0.1", "qr": False}}}
                                            if args.graph == "camera" else {}))
    topic = f"{args.ns}/image_raw"
    launch_args = ([f"{args.graph}.launch.py", f"namespace:={args.ns}", f"params_file:={camera_params}"]
                   + ([f"port:={free_port()}"] if args.graph == "camera" else [f"camera_topic:={topic}"]))
    X, Y = load_mnist("test")
    pool = np.arange(len(X))
    if args.scene == "covered":
        pool = covered_digits(state_dir / "labeler.state", X, 300)
        print(f"scene: {len(pool)} covered digits", flush=True)
    X_all, Y_all = X, Y
    X, Y = X[pool], Y[pool]
    launch = Launch(launch_args, env, home / "soak.log")
    rng = np.random.default_rng(0)
    rclpy.init()
    node = rclpy.create_node("soak_camera")
    pub = node.create_publisher(Image, topic, qos_profile_sensor_data)
    truth: dict[int, tuple[int, str]] = {}           # frame index -> (digit, phase)
    preds = {"moving": [0, 0, 0], "parked": [0, 0, 0]}   # predictions, right, no class
    names: dict[str, int] = {}
    answered: list[str] = []
    skipped: list[str] = []

    def on_prediction(m: Prediction) -> None:
        i = m.header.stamp.nanosec if m.header.stamp.sec == 1 else -1
        if i not in truth:
            return
        digit, phase = truth.pop(i)
        cell = preds[phase]
        cell[0] += 1
        said = int(m.class_name) if m.class_name.isdigit() else m.class_id
        cell[1] += said == digit
        cell[2] += m.class_id < 0

    def on_classes(m: ClassList) -> None:
        names.clear()
        names.update({c.name: c.id for c in m.classes})

    answer_pub = node.create_publisher(LabelAnswer, f"{args.ns}/label_answer", 10)

    def on_request(m: LabelRequest) -> None:
        i = m.features.header.stamp.nanosec if m.features.header.stamp.sec == 1 else -1
        digit = labels_of.get(i)
        if args.no_answer or m.request_id in answered or m.request_id in skipped:
            return
        if digit is None:        # not a frame of ours (a group the replay formed): skipped, as by a person unsure
            answer_pub.publish(LabelAnswer(request_id=m.request_id, class_id=-2, answered_by="soak"))
            skipped.append(m.request_id)
            return
        cid = names.get(str(digit), digit if digit < 6 else -1)
        answer_pub.publish(LabelAnswer(request_id=m.request_id, class_id=cid,
                                       new_class_name=str(digit) if cid < 0 else "", answered_by="soak"))
        answered.append(m.request_id)

    labels_of: dict[int, int] = {}
    node.create_subscription(Prediction, f"{args.ns}/predictions", on_prediction, 1000)
    if args.graph == "camera":
        from rclpy.qos import DurabilityPolicy, QoSProfile
        node.create_subscription(LabelRequest, f"{args.ns}/label_request", on_request, 10)
        node.create_subscription(ClassList, f"{args.ns}/classes", on_classes,
                                 QoSProfile(depth=1, durability=DurabilityPolicy.TRANSIENT_LOCAL))
    end = time.monotonic() + 120
    while pub.get_subscription_count() < (2 if args.graph == "camera" else 1) and time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    if pub.get_subscription_count() == 0:
        launch.stop()
        raise SystemExit(f"nothing subscribed to {topic} in 120 s: see {home / 'soak.log'}")
    t0 = time.monotonic()
    writes = Writes(state_dir, t0)
    watcher = threading.Thread(target=writes.run, daemon=True)
    watcher.start()
    stats: dict[str, dict] = {"early": {}, "end": {}}
    rss_series: dict[str, list[float]] = {n: [] for n in NODES}     # each node's RSS (MB) every minute
    next_minute = 60.0
    restarts: dict[str, set[int]] = {n: set() for n in NODES}
    step = (W * 3 + 63) // 64 * 64
    sent, digit_i, parked_i, digit = 0, 0, 0, 0
    frame_payload: array.array | None = None
    parked_digit = 0
    cycle = args.moving_s + args.parked_s
    noisy: list[array.array] = []
    last_scan = 0.0
    while (t := time.monotonic() - t0) < args.minutes * 60:
        novel = t < args.novel_s
        moving = novel or ((t - args.novel_s) % cycle) < args.moving_s
        if moving:
            noisy = []
            if sent % args.hold == 0 or not frame_payload:
                digit_i += 1
                frame = camera_frame((X_all if novel else X)[digit_i % len(X_all if novel else X)])
                rows = np.zeros((H, step), np.uint8)
                rows[:, :W * 3] = frame.reshape(H, W * 3)
                frame_payload = array.array("B", rows.tobytes())
                digit = int((Y_all if novel else Y)[digit_i % len(Y_all if novel else Y)])
            payload = frame_payload
        else:
            frame_payload = None        # moving again: a new digit at once
            if not noisy:       # a new parked view: 30 noisy frames of one digit, round-robin
                parked_i += 1
                k = (7919 * parked_i) % len(X)
                base = camera_frame(X[k]).astype(np.float32)
                noisy = []
                for _ in range(30):
                    rows = np.zeros((H, step), np.uint8)
                    rows[:, :W * 3] = np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8).reshape(
                        H, W * 3)
                    noisy.append(array.array("B", rows.tobytes()))
                parked_digit = int(Y[k])
            payload, digit = noisy[sent % 30], parked_digit
        msg = Image(height=H, width=W, encoding="rgb8", is_bigendian=0, step=step)
        msg.header.stamp.sec, msg.header.stamp.nanosec = 1, sent
        msg.header.frame_id = "camera"
        msg.data = payload
        truth[sent] = (digit, "moving" if moving else "parked")
        labels_of[sent] = digit       # all of them: a question may show a frame of its group's first minutes
        pub.publish(msg)
        sent += 1
        if t - last_scan > 5:
            last_scan = t
            for name, pid in node_pids(launch.proc.pid).items():
                restarts[name].add(pid)
                s = proc_stats(pid)
                if s is not None:
                    stats["end"][name] = {**s, "pid": pid}
                    if t < args.early_s or name not in stats["early"]:
                        stats["early"][name] = {**s, "pid": pid, "t_s": round(t)}
                    if t >= next_minute:
                        rss_series[name].append(s["rss_mb"])
            if t >= next_minute:
                next_minute += 60.0
            for i in [i for i in truth if i < sent - 300]:
                truth.pop(i)          # no prediction 10 s later: not coming
            if launch.proc.poll() is not None:
                break
        next_t = t0 + sent / args.rate
        while (d := next_t - time.monotonic()) > 0:
            rclpy.spin_once(node, timeout_sec=d)
    wall = time.monotonic() - t0
    end = time.monotonic() + 5
    while time.monotonic() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    rc = launch.stop()
    time.sleep(1)
    writes.stop.set()
    watcher.join()
    node.destroy_node()
    rclpy.shutdown()
    frames = [0, 0, 0]
    for m in DROPS.finditer("\n".join(launch.lines)):
        for j in range(3):
            frames[j] += int(m.group(j + 1))
    text = "\n".join(launch.lines)
    bad = [ln for ln in launch.lines if re.search(r"\[(ERROR|WARN|FATAL)\]|Traceback", ln)]
    minutes = wall / 60
    for name in stats["end"]:     # CPU share over the soak: from the early figures to the end
        e, f = stats["early"].get(name), stats["end"][name]
        if e and e["pid"] == f["pid"]:
            f["cpu_pct_since_early"] = round(100 * (f["cpu_s"] - e["cpu_s"]) / max(1e-9, wall - e["t_s"]), 1)
    result = {
        "graph": args.graph, "scene": args.scene, "scene_digits": len(X), "minutes": round(minutes, 2),
        "replay_s": round(t_replay, 1), "launch_rc": rc,
        "frames_sent": sent, "extractor_frames": dict(zip(("received", "processed", "dropped"), frames)),
        "predictions": {k: {"n": v[0], "right": v[1], "no_class": v[2],
                            "right_pct": round(100 * v[1] / max(1, v[0]), 2)} for k, v in preds.items()},
        "questions_answered": len(answered), "questions_skipped": len(skipped), "nodes": stats,
        "rss_mb_each_minute": {n: v for n, v in rss_series.items() if v},
        "restarts": {n: len(p) - 1 for n, p in restarts.items() if p},
        "writes": writes.summary(minutes), "warn_error_lines": len(bad), "warn_error_first": bad[:20],
        "state_folder_kB_end": round(sum(p.stat().st_size for p in state_dir.glob("*") if p.is_file()) / 1e3, 1),
        "not_learned_lines": [ln for ln in launch.lines if "not learned" in ln][-3:],
        "tail": text[-1500:],
    }
    Path(args.out).write_text(json.dumps(result, indent=1))
    print(json.dumps({k: v for k, v in result.items() if k not in ("tail", "warn_error_first")}, indent=1))


if __name__ == "__main__":
    main()
