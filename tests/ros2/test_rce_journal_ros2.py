"""The TinyRCE labeler's journal under ``ros2 launch tinyrce.launch.py`` (rclpy, ROS 2 Humble): killed with -9 after
a person's answer and a rename of the class it made, launch starts it again and it learns the answer, the rename and
what came after them from its journal (the records are rclpy messages' CDR bytes, read back as rclpy messages), with
the answer still changeable and the class under its new name on ``classes``.

One question an hour (``max_requests_per_hour: 1``) and no timed checkpoint within the test (``save_period_s``), so
that after the answer every sample the labeler does not cover is journaled and none is checkpointed: the debug line of
such a sample ("not asked about" over the budget, or "joins" the question) comes after its record.
"""

from __future__ import annotations

import re
import signal

from tests.processes import kill9
from tests.ros2.conftest import params_file
from tinycl_nodes.fleet.broker import free_port
from tinycl_nodes.graphs import GRAPHS

NS = "/rce"
NEW_CLASS = "seven"
RENAMED = "digit seven"      # a person renames it: a journal record too
RESTARTED = re.compile(r"TinyRCE labeler: (\d+) classes, \d+ prototypes, \d+ pending label requests and its journal "
                       r"\((\d+) messages learned again\)")


def test_a_killed_rce_labeler_learns_its_journal_again_under_ros2(ros):
    params = params_file(ros.tmp, "tinyrce", label_app={"host": "127.0.0.1", "qr": False},
                         sensor={"rate_hz": 20.0, "stream_length": 1000},
                         labeler={"max_requests_per_hour": 1, "save_period_s": 3600.0},
                         metrics={"exit_when_done": False})
    launch = ros.start("ros2", "launch", "tinycl_nodes", "tinyrce.launch.py", f"namespace:={NS}",
                       f"port:={free_port()}", f"params_file:={params}", "log_level:=debug",
                       name="ros2 launch tinyrce")
    expected = {f"{NS}/{name}" for name in GRAPHS["tinyrce"]}
    ros.wait_until("all tinyrce nodes in `ros2 node list`", lambda: expected <= ros.node_list(), timeout_s=90)
    out = ros.run("ros2", "topic", "echo", "--once", "--no-daemon", f"{NS}/label_request", "--field", "request_id",
                  timeout_s=120).stdout
    request_id = out.split("\n---")[0].strip()
    ros.run("ros2", "topic", "pub", "--once", f"{NS}/label_answer", "tinycl_nodes/msg/LabelAnswer",
            f"{{request_id: '{request_id}', class_id: -1, new_class_name: '{NEW_CLASS}'}}", timeout_s=45)
    answered = launch.wait_for_line(f"label request {request_id} answered", 30)      # logged after its record
    ros.run("ros2", "topic", "pub", "--once", f"{NS}/rename_class", "tinycl_nodes/msg/LabelAnswer",
            f"{{request_id: 'rename-1', class_id: 6, new_class_name: '{RENAMED}'}}", timeout_s=45)
    launch.wait_for_line(f"class 6 renamed '{RENAMED}'", 30)                          # logged after its record
    after = launch.text.index(answered)
    journaled = re.compile(r"\[rce\.labeler\]: sample \d+ (not asked about|joins label request)")
    ros.wait_until("a sample journaled after the answer", every_s=0.05, timeout_s=30,
                   check=lambda: journaled.search(launch.text[after:]))
    kill9(launch.proc.pid, "labeler")
    launch.wait_for_line("the labeler node died (killed by SIGKILL): restarting it", 15)
    restarted = ros.wait_until("the restarted labeler's line", lambda: RESTARTED.search(launch.text), timeout_s=60)
    classes, relearned = int(restarted.group(1)), int(restarted.group(2))
    assert classes == 7 and relearned >= 1, restarted.group(0)       # digits 0-5 and the person's new class
    assert "1 answer(s) from before the restart can still be changed" in launch.text, launch.text[-3000:]
    classes_now = ros.run("ros2", "topic", "echo", "--once", "--no-daemon", f"{NS}/classes", timeout_s=60).stdout
    assert f"name: {RENAMED}" in classes_now and f"name: {NEW_CLASS}" not in classes_now, classes_now
    ros.wait_until("the restarted labeler at work", lambda: re.search(
        r"\[rce\.labeler\]: sample \d+ ", launch.text[launch.text.index(restarted.group(0)):]), timeout_s=30)
    assert launch.stop(signal.SIGINT) == 0, launch.text[-3000:]
    text = launch.text
    assert "Traceback" not in text and "could not be learned again" not in text, text[-3000:]
    print(f"ros2 tinyrce: the labeler killed -9 after an answer learned {relearned} journal records again "
          f"({classes} classes)")
