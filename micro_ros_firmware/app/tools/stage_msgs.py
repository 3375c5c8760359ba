"""Stage the tinycl_nodes message package for a micro-ROS library build: package.xml, CMakeLists.txt and
msg/ of the repository root (the ROS 2 package), plus the empty folders its CMakeLists installs.

A copy, not a symlink: micro_ros_platformio copies extra_packages/ with shutil.copytree, and a link to the
repository root (which contains extra_packages/) loops ("Too many levels of symbolic links").

    python3 stage_msgs.py DEST            # DEST/tinycl_nodes (build-uros.sh)
    extra_scripts = pre:tools/stage_msgs.py   # platformio.ini: <project>/extra_packages/tinycl_nodes
"""

import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3] if "__file__" in globals() else None


def stage(repo: Path, dest_parent: Path) -> Path:
    dest = dest_parent / "tinycl_nodes"
    if dest.is_symlink():
        dest.unlink()
    shutil.rmtree(dest, ignore_errors=True)
    (dest / "msg").mkdir(parents=True)
    for name in ("package.xml", "CMakeLists.txt"):
        shutil.copy2(repo / name, dest / name)
    for msg in sorted((repo / "msg").glob("*.msg")):
        shutil.copy2(msg, dest / "msg" / msg.name)
    for folder in ("tinycl_nodes", "launch", "config"):   # installed by the root CMakeLists; empty here
        (dest / folder).mkdir()
        (dest / folder / ".keep").touch()
    return dest


try:  # run by PlatformIO as a pre: extra script
    Import("env")  # type: ignore[name-defined]  # noqa: F821
    project = Path(env["PROJECT_DIR"])  # type: ignore[name-defined]  # noqa: F821
    stage(project.parents[1], project / "extra_packages")
except NameError:
    if __name__ == "__main__":
        if len(sys.argv) != 2:
            sys.exit("usage: stage_msgs.py DEST_FOLDER")
        print(stage(REPO, Path(sys.argv[1])))
