"""``launcher.node_settings`` as a process of its own, for ``ros2 launch``: every node's parameters checked before any
node starts.

``ros2`` runs on the Python its script names (``#!/usr/bin/python3``, the system's), whose pydantic is 1.x or absent
(docs/ros2_dependencies.md); the nodes run on ``python3`` from ``PATH`` (``#!/usr/bin/env python3``: the venv's, with
pydantic 2). So the launch file (``ros_launch``) asks this module, run by that same ``python3``, rather than validate in
its own process.

    echo '{"learner": ["--ros-args", "--params-file", "p.yaml", "-r", "__node:=learner"]}' | \\
        python3 -m tinycl_nodes.parameter_check

Exit 0: every node would start with these; exit 2 (``restarts.USER_ERROR``): one line per problem on stdout.
"""

from __future__ import annotations

import json
import sys

from .core.errors import TinyclError
from .launcher import node_settings
from .restarts import USER_ERROR


def main() -> int:
    try:
        commands = json.load(sys.stdin)
        if not (isinstance(commands, dict) and all(isinstance(v, list) for v in commands.values())):
            raise ValueError("expected {node: [ROS arguments]}")
    except ValueError as exc:
        print(f"parameter_check: its input is not a node → arguments JSON object: {exc}")
        return USER_ERROR
    try:
        node_settings({name: [str(a) for a in argv] for name, argv in commands.items()})
    except TinyclError as exc:
        print(exc)
        return USER_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
