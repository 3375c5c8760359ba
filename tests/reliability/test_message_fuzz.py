"""10,000 hostile but well-typed messages over every input topic of a running TinyNDC graph
(sensor → extractor → labeler → learner → exporter, dds backend) while a clean stream runs:
no node crashes, each bad message is one line, learning goes on, and the head learned from the
clean stream is the one an untouched graph learns (held-out accuracy within 0.5 points)."""

from __future__ import annotations

import time
from contextlib import ExitStack

from .conftest import Graph, accuracy, held_out, reference_head, saved_head
from .hostile import TOPICS, Fuzzer

N_MESSAGES = 10_000
STREAM, RATE = 2500, 150.0                       # ~17 s: the fuzz runs while the stream is learned


def test_10000_hostile_messages_do_not_stop_learning(domain, tmp_path, mnist_features):
    with ExitStack() as stack:
        g = Graph(stack, domain, tmp_path, STREAM, RATE)
        exporter = g.start("exporter", f"out_dir:={tmp_path / 'export'}", "period_s:=1.0")
        g.start_all()
        fuzz = Fuzzer(g.bus, seed=10)
        assert g.spin_until(lambda: g.labels >= 150, 90), "the clean stream did not start"
        t0 = time.monotonic()
        for i in range(N_MESSAGES):
            fuzz.send(TOPICS[i % len(TOPICS)])
            if i % 50 == 0:
                g.bus.spin_once(0.0)
                assert all(p.proc.poll() is None for n, p in g.procs.items() if n != "sensor"), \
                    {n: p.lines[-5:] for n, p in g.procs.items()}
        fuzz_s = time.monotonic() - t0
        labels_after_fuzz = g.labels
        g.finish()
        assert exporter.stop() == 0
        lines = {n: p.lines for n, p in g.procs.items()}
    tracebacks = sum("Traceback" in ln for ls in lines.values() for ln in ls)
    errors = {n: sum("ERROR" in ln or "[ERROR]" in ln for ln in ls) for n, ls in lines.items()}
    print(f"message fuzz: {sum(fuzz.sent.values())} hostile messages in {fuzz_s:.1f} s {fuzz.sent}; "
          f"error lines per node {errors}; {tracebacks} tracebacks; labels during/after: {labels_after_fuzz}/{g.labels}")
    assert sum(fuzz.sent.values()) >= N_MESSAGES and tracebacks == 0
    assert not list(tmp_path.parent.glob("etc")) and not (tmp_path / "export" / ".." / ".." / "etc").exists()
    X, y = held_out(mnist_features, STREAM)
    n, h = mnist_features.n_features, mnist_features.extractor_hash
    ref_head = reference_head(mnist_features, "tinycl", STREAM)
    head = saved_head(tmp_path, "tinycl", n, h)
    ref, got = accuracy(ref_head, X, y), accuracy(head, X, y)
    print(f"held-out accuracy: clean run {ref:.2f} %, under fuzz {got:.2f} % ({got - ref:+.2f} pt); "
          f"samples learned {head.n_seen} (clean run {ref_head.n_seen})")
    assert head.n_seen == ref_head.n_seen          # every clean label learned, no hostile one
    assert abs(got - ref) <= 0.5
