"""Builds of the C core for the firmware tests (host: CMake + ASan/UBSan; ctypes library)."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ..domains import free_domain
from ..once import once_per_run
from ..e2e.conftest import browser, phone  # noqa: F401 - fixtures: Chromium, driven by Playwright (phone tests)
from ..ros2.conftest import ros2_base_env, ros2_ws  # noqa: F401 - fixtures: ROS 2 with the package built

REPO = Path(__file__).resolve().parents[2]
FW = REPO / "micro_ros_firmware"
INSTALL = ("install it with `bash micro_ros_firmware/tools/install-toolchain.sh` (Debian packages cmake gcc "
           "gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm)")


def need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.fail(f"{', '.join(missing)} not found: {INSTALL}")


def run(cmd, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if p.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{p.stdout[-4000:]}\n{p.stderr[-4000:]}")
    return p


def tool_module(name: str):
    """A script of micro_ros_firmware/tools (not a package) loaded as the module ``name``."""
    spec = importlib.util.spec_from_file_location(name, FW / "tools" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod   # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def board_app(work_name: str, n_frames: int, seed: int, classes: str, period_ms: int, data_dir,
              options: tuple[str, ...] = ()) -> tuple[Path, Path, object, dict]:
    """The micro-ROS board app for QEMU built (incrementally) in ``micro_ros_firmware/<work_name>`` on the DDS domain
    of this test run: (work folder, ELF, the generated board data, the cached agent and libmicroros.a)."""
    need("cmake", "arm-none-eabi-gcc", "qemu-system-arm")
    from tinycl_nodes.bus.dds_config import domain_id

    demo = tool_module("demo_board")
    work = FW / work_name
    work.mkdir(exist_ok=True)
    uros = demo.build_uros()
    elf, bd = demo.build_firmware(work, uros["LIBMICROROS"], n_frames, seed, classes, period_ms, domain_id(None),
                                  str(data_dir), options)
    return work, elf, bd, uros


def boot_alone(elf: Path, log: Path, until, timeout_s: float = 60.0) -> list[str]:
    """The board app on QEMU without an agent until ``until(log lines)`` holds (the board stopped or ``timeout_s``
    passed first: a failure showing its log's end); its log lines."""
    import time

    qemu = tool_module("demo_board").Qemu(elf, log)
    try:
        t0 = time.monotonic()
        while not until(qemu.lines()):
            assert qemu.proc.poll() is None and time.monotonic() - t0 < timeout_s, qemu.text()[-1500:]
            time.sleep(0.1)
    finally:
        qemu.stop()
    return qemu.lines()


def latent_memory(work: Path) -> int:
    """The replay patterns of the latent app built in ``work`` (its CMake cache: TINYCL_APP_LATENT_MEMORY)."""
    cache = (work / "arm" / "CMakeCache.txt").read_text()
    return int(cache.split("TINYCL_APP_LATENT_MEMORY:STRING=", 1)[1].split()[0])


def latent_host_replay(lib, work: Path, images, events: list[tuple[int, str, int, int]], n: int) -> list[int]:
    """The host build of the same C as the latent app built in ``work``: the CNN's cut codes, the latent head
    learning the answers at the board's frames; its predictions (-1 before it has any)."""
    from tinycl_nodes.firmware_latent import LatentUpperHeadC

    ch = LatentUpperHeadC(lib, memory_size=latent_memory(work))
    ch.use_grid(lib.cut_scale, lib.cut_zero_point)
    cuts = [lib.features_cut_q(img)[1] for img in images[:n]]

    def apply(kind: str, sid: int, label: int) -> None:
        assert kind == "answer"
        ch.learn_q(cuts[sid - 1], label)

    def step(i: int) -> int:
        p = ch.predict_q(cuts[i])
        return -1 if p is None else p

    return tool_module("demo_board").replay_events(events, n, apply, step)


def predicted(lines: list[str]) -> int:
    """Frames the board has predicted so far (its ``P`` lines)."""
    return sum(ln.startswith("P ") for ln in lines)


SAN_ENV = {**os.environ, "ASAN_OPTIONS": "detect_leaks=1:halt_on_error=1:abort_on_error=0",
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}


@pytest.fixture(scope="module", autouse=True)
def _own_domain():
    """Each firmware test file on a DDS domain of its own: $ROS_DOMAIN_ID is built into the board app and read by the
    graph beside it, so two boards at once (two pytest workers) do not hear each other, and none runs on domain 0,
    a robot's own. Module-scoped: set before a file's app is built."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ROS_DOMAIN_ID", str(free_domain()))
        yield


#: a participant of its own on the test's domain, held until its stdin closes (the test ends, or pytest dies)
_PARTICIPANT = ("import sys; from tinycl_nodes.bus import create_bus; "
                "b = create_bus(sys.argv[1], '/robot', backend='dds', dds_config='loopback'); "
                "print('ready', flush=True); sys.stdin.read()")


@pytest.fixture
def robot_processes():
    """Start ``n`` other DDS processes on this test's domain first (a robot's own nodes), so that the graph's nodes
    come after them in discovery (participant indices n and up)."""
    procs: list[subprocess.Popen] = []

    def start(n: int) -> None:
        for i in range(n):
            procs.append(subprocess.Popen([sys.executable, "-c", _PARTICIPANT, f"robot_node{i}"], cwd=REPO,
                                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
        for p in procs:
            assert p.stdout.readline().strip() == "ready", f"a robot process did not start (exit {p.poll()})"

    yield start
    for p in procs:
        p.stdin.close()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


@pytest.fixture(scope="session")
def host_build(request, tmp_path_factory) -> Path:
    """Host build with -Wall -Wextra -Werror and -fsanitize=address,undefined (libtinycl.so without), once per run."""
    need("cmake", "gcc")

    def build(folder: Path) -> str:
        run(["cmake", "-S", FW, "-B", folder, "-DTINYCL_SANITIZE=ON", "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
             f"-DTINYCL_PYTHON={sys.executable}"])
        run(["cmake", "--build", folder, "-j2"])
        return str(folder)

    return Path(once_per_run(request, tmp_path_factory, "fw-host", build))


@pytest.fixture(scope="session")
def vectors(tmp_path_factory, data_dir, host_build):
    """Python-made vectors (real MNIST) and the C runner's outputs on them (under the sanitizers)."""
    from tinycl_nodes.export.c_vectors import make_vectors

    out = tmp_path_factory.mktemp("fw-vectors")
    v = make_vectors(out, data=str(data_dir), n_images=256, n_stream=1000)
    run([host_build / "tinycl_run", out], env=SAN_ENV)
    return v
