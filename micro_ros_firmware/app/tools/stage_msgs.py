"""Stage the tinycl_nodes message package for a micro-ROS library build: msg/ of the repository root with a
package.xml and CMakeLists.txt that build only the interfaces (written here, not copied: the root package's
Python dependencies and install rules mean nothing to a micro-ROS build, and a change to them must not
invalidate the cached library, whose key is this script and msg/*.msg).

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
    (dest / "package.xml").write_text(PACKAGE_XML)
    (dest / "CMakeLists.txt").write_text(CMAKELISTS)
    for msg in sorted((repo / "msg").glob("*.msg")):
        shutil.copy2(msg, dest / "msg" / msg.name)
    return dest


PACKAGE_XML = """<?xml version="1.0"?>
<package format="3">
  <name>tinycl_nodes</name>
  <version>0.1.0</version>
  <description>tinycl messages (interfaces only, for micro-ROS)</description>
  <maintainer email="maintainers@tinycl.invalid">tinycl maintainers</maintainer>
  <license>Apache-2.0</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>std_msgs</depend>
  <depend>sensor_msgs</depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
"""

CMAKELISTS = """cmake_minimum_required(VERSION 3.8)
project(tinycl_nodes)
find_package(ament_cmake REQUIRED)
find_package(rosidl_default_generators REQUIRED)
find_package(std_msgs REQUIRED)
find_package(sensor_msgs REQUIRED)
file(GLOB msg_files RELATIVE "${CMAKE_CURRENT_SOURCE_DIR}" "msg/*.msg")
rosidl_generate_interfaces(${PROJECT_NAME} ${msg_files} DEPENDENCIES std_msgs sensor_msgs)
ament_export_dependencies(rosidl_default_runtime)
ament_package()
"""


try:  # run by PlatformIO as a pre: extra script
    Import("env")  # type: ignore[name-defined]  # noqa: F821
    project = Path(env["PROJECT_DIR"])  # type: ignore[name-defined]  # noqa: F821
    stage(project.parents[1], project / "extra_packages")
except NameError:
    if __name__ == "__main__":
        if len(sys.argv) != 2:
            sys.exit("usage: stage_msgs.py DEST_FOLDER")
        print(stage(REPO, Path(sys.argv[1])))
