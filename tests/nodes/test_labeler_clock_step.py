"""The system clock steps; a TinyRCE labeler's questions, and the phone's label app, keep their deadlines.

A robot without a real-time clock boots at the time it last saved, and NTP sets it forward minutes later; a person or
a GPS fix can set it back. The labeler's deadlines are wall-clock seconds (a question keeps its deadline across a
restart). Read from the system clock, a step forward expired every open question at once, and a step back held open
questions, and so the budget of questions, for as long as the step: after the clock went back an hour, a labeler
asked nothing new for an hour. The label app's page dropped every question at a step forward.

The labeler and the label app run as processes over DDS on a wall clock the test steps (``tests/faketime.py``,
libfaketime: their monotonic and boot-time clocks do not step, as with NTP); ``wait_for_subscribers:=0`` keeps the
labeler's runner from ``time.sleep``, which libfaketime 0.9.10 breaks. A boot's clock origin is kept in the user's
state folder, stamped with the boot id (``steady_wall``): a fresh ``XDG_STATE_HOME`` stands for a new boot.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.faketime import faketime_env
from tests.label_page import page_state
from tests.nodes.conftest import matches_made, node, spin_until, wait_for_new_matches
from tests.nodes.test_rce_graph import MODEL, Probe
from tinycl_nodes.fleet.broker import free_port

pytestmark = pytest.mark.waits      # what make test does with it: pyproject.toml

TTL_S = 5.0        # the labeler's question lifetime
APP_TTL_S = 60.0   # the page's: longer, so that it outlives the labeler's restart here
TOKEN = "clock-step-token"


class Scene:
    """A TinyRCE labeler and the phone's label app, as processes on a wall clock the test sets (``clock``), each
    boot with a state folder of its own (a fresh ``XDG_STATE_HOME``: a new boot's clock origin)."""

    def __init__(self, domain: int, tmp_path: Path, offset: str, ttl_s: float, app_ttl_s: float = APP_TTL_S) -> None:
        self.domain, self.tmp_path, self.t = domain, tmp_path, Probe(domain)
        self.clock = tmp_path / "offset"
        self.clock.write_text(offset + "\n")
        self.params = (f"model:={MODEL}", "preset:=rce", f"state_dir:={tmp_path / 'state'}",
                       "wait_for_subscribers:=0", "class_names:={0: walking, 1: seated}", "min_group:=1",
                       "max_open:=1", "dedupe_distance:=3.0", f"request_ttl_s:={ttl_s}")
        self.port = free_port()
        self.app_params = ("host:=127.0.0.1", f"port:={self.port}", f"token:={TOKEN}", "qr:=false",
                           f"request_ttl_s:={app_ttl_s}", f"state_dir:={tmp_path / 'app'}")

    def boot(self, name: str) -> dict[str, str]:
        """The processes' environment in a boot of their own: its state folder keeps the boot's clock origin."""
        (self.tmp_path / name).mkdir(mode=0o700, exist_ok=True)
        return {**faketime_env(self.clock), "XDG_STATE_HOME": str(self.tmp_path / name)}

    def labeler(self, stack: ExitStack, env: dict[str, str]):
        return stack.enter_context(node("labeler", self.domain, *self.params, env=env))

    def app(self, stack: ExitStack, env: dict[str, str]):
        app = stack.enter_context(node("label_app", self.domain, *self.app_params, env=env))
        app.wait_for_line(f"127.0.0.1:{self.port}", 30)
        return app

    def on_the_page(self) -> dict[str, float]:
        """The questions the phone's page shows: request id → seconds it has left."""
        return {p["id"]: p["expires_in_s"] for p in page_state(f"http://127.0.0.1:{self.port}", TOKEN)["pending"]}

    def page_shows(self, rid: str) -> bool:
        return spin_until(self.t.bus, lambda: rid in self.on_the_page(), 15)

    def asked(self, n: int, labeler) -> str:
        """The ``n``-th question asked (waiting for it)."""
        t = self.t
        assert spin_until(t.bus, lambda: len({r.request_id for r in t.requests}) >= n, 15), labeler.lines[-10:]
        return list(dict.fromkeys(r.request_id for r in t.requests))[n - 1]

    def status_of(self, rid: str) -> list[str]:
        return [s["status"] for s in self.t.status if s["request_id"] == rid]

    def start(self, stack: ExitStack):
        """The first boot: both started, two known classes taught, then a novel window: (labeler, app, the question
        it asks, shown on the page)."""
        env = self.boot("boot1")
        labeler, app = self.labeler(stack, env), self.app(stack, env)
        assert self.t.ready(self.t.features, self.t.answers), labeler.lines[-10:]
        time.sleep(1.0)
        for i in range(4):
            self.t.send(i % 2, label=i % 2)
        self.t.send(2)
        rid = self.asked(1, labeler)
        assert self.page_shows(rid), app.lines[-10:]
        return labeler, app, rid


def test_a_clock_step_moves_no_deadline_of_a_question(domain, tmp_path):
    sc = Scene(domain, tmp_path, "+0", TTL_S)
    t, clock, status_of = sc.t, sc.clock, sc.status_of
    try:
        with ExitStack() as stack:
            labeler, app, first = sc.start(stack)

            # forward an hour (NTP at boot): the question stays open, on the page too, and an answer is learned
            clock.write_text("+1h\n")
            t.bus.spin_once(2.5)                       # two ticks of the labeler's expiry, ten of the page's
            assert first in sc.on_the_page(), app.lines[-10:]
            t.answer(first, -1, "jumping")
            assert spin_until(t.bus, lambda: status_of(first), 10), labeler.lines[-10:]
            assert status_of(first) == ["learned"], (t.status, labeler.lines[-10:])

            # back two hours: the next question expires after its lifetime, not two hours later, and frees the
            # one open question for the next novel thing
            clock.write_text("-1h\n")
            t.send(3)
            second = sc.asked(2, labeler)
            stepped = time.monotonic()
            assert spin_until(t.bus, lambda: "expired" in status_of(second), TTL_S + 10), \
                (t.status, labeler.lines[-10:])
            assert time.monotonic() - stepped >= TTL_S / 2      # its lifetime, not at once
            t.send(4)
            third = sc.asked(3, labeler)

            # a reboot, the clock set back another hour meanwhile: the question each saved lies in the new boot's
            # future, and expires after its lifetime
            assert labeler.stop() == 0, labeler.lines[-10:]
            assert status_of(third) == [], t.status          # still open when the labeler stopped
            assert sc.page_shows(third), app.lines[-10:]
            assert app.stop() == 0, app.lines[-10:]
            clock.write_text("-2h\n")
            env = sc.boot("boot2")
            app = sc.app(stack, env)
            assert 0 < sc.on_the_page()[third] <= APP_TTL_S, (sc.on_the_page(), app.lines[-10:])
            labeler = sc.labeler(stack, env)
            labeler.wait_for_line("TinyRCE labeler:", 60)      # started: the question restored
            restarted = time.monotonic()
            assert spin_until(t.bus, lambda: "expired" in status_of(third), TTL_S + 10), \
                (t.status, labeler.lines[-10:])
            assert not any("Traceback" in "\n".join(n.lines) for n in (labeler, app))
    finally:
        t.bus.shutdown()
    print(f"restarted labeler let its question expire {time.monotonic() - restarted:.1f} s after it started")


def test_a_node_started_before_ntp_keeps_its_questions_when_restarted_after_it(domain, tmp_path):
    """The robot without a real-time clock: the labeler and the label app start three hours behind, NTP sets the
    clock right, and then both restart in the same boot (the labeler killed). Each read the deadlines it saved on the
    clock of its start, three hours off: the question expired at once. One origin per boot (``steady_wall``, kept in
    the user's state folder) keeps it open for the rest of its lifetime, on the page too. (Lifetimes of five minutes:
    the restarts take seconds, the step three hours.)"""
    ttl_s = 300.0
    sc = Scene(domain, tmp_path, "-3h", ttl_s, ttl_s)
    t, status_of = sc.t, sc.status_of
    try:
        with ExitStack() as stack:
            labeler, app, rid = sc.start(stack)
            env = sc.boot("boot1")                     # the same boot as the start's

            sc.clock.write_text("+0\n")                # NTP: three hours forward
            seen = matches_made(*t.labeler_ends())
            labeler.proc.kill()
            labeler.proc.wait()
            assert app.stop() == 0, app.lines[-10:]
            app = sc.app(stack, env)
            assert 0 < sc.on_the_page().get(rid, 0) <= ttl_s, (sc.on_the_page(), app.lines[-10:])
            labeler = sc.labeler(stack, env)
            labeler.wait_for_line("TinyRCE labeler:", 60)
            wait_for_new_matches(t.bus, t.labeler_ends(), seen, labeler)
            t.bus.spin_once(3.0)                       # three ticks of the labeler's expiry
            assert status_of(rid) == [], (t.status, labeler.lines[-10:])
            t.answer(rid, -1, "jumping")
            assert spin_until(t.bus, lambda: status_of(rid), 10), labeler.lines[-10:]
            assert status_of(rid) == ["learned"], (t.status, labeler.lines[-10:])
            assert not any("Traceback" in "\n".join(n.lines) for n in (labeler, app))
    finally:
        t.bus.shutdown()
