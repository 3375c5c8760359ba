"""Hostile but well-typed messages to the inputs the graph fuzz (test_message_fuzz.py) does not reach:
the board node (``labeled``; ``image`` + ``ground_truth`` with input image), the metrics node
(``ground_truth``, ``predictions``) and the TinyRCE labeler (``features``, ``label_answer``,
``label_correction``, ``rename_class``). Each node runs as a process in its own namespace: 0
crashes, 0 tracebacks, a refused message is one line, and each node learns (or scores) the clean
messages sent after the fuzz — and nothing of the hostile ones."""

from __future__ import annotations

import json
import subprocess
import time
from contextlib import ExitStack

import numpy as np

from tests.nodes.conftest import node, spin_until
from tinycl_nodes.bus import create_bus
from tinycl_nodes.datasets import load_mnist
from tinycl_nodes.interfaces import as_sequence, ns_to_time
from tinycl_nodes.nodes.label_requests import MAX_REQUEST_ID, NEW_CLASS, NO_CLASS

from .hostile import HUGE, Fuzzer

PER_TOPIC = 300                                   # hostile messages per input topic (seeded)
BAD_NAMES = ("", "   ", HUGE, "a\x00b", "\u200d", "\u00ad", "x\x9by", "y" * 200)   # each refused by the name rule


class NodeFuzzer(Fuzzer):
    """The graph fuzz's defects (sizes, NaN/inf, ±1e38, wrong hashes, 64 KB strings) on more topics."""

    def __init__(self, bus, seed: int) -> None:
        super().__init__(bus, seed)
        m = bus.msg
        self.Prediction, self.Answer = m("Prediction"), m("LabelAnswer")

    def labeled_bad_label(self):
        """Features a node would learn, with a class id no node may take."""
        x = self.rng.normal(0, 1, self.n).astype(np.float32)
        return self.Labeled(header=self.header(), features=self.Features(
            header=self.header(), data=as_sequence(x, "f"), extractor_hash=self.hash, sample_id=1, true_label=-1,
            labelled=False), label=int(self.pick(-2, -7, -2**31)), confidence=1.0, source=2, label_name="")

    def labeled_malformed(self):
        """Features and a label a node would learn, in a message no labeler sends: a 64 KB text (a label name or a
        frame id: journaled as it came, 64 KB on disk a sample), a NaN or out-of-range confidence, or an unknown
        source."""
        x = self.rng.normal(0, 1, self.n).astype(np.float32)
        bad = int(self.rng.integers(0, 5))
        Header = self.Header
        return self.Labeled(header=Header(frame_id=HUGE if bad == 0 else ""), features=self.Features(
            header=Header(frame_id=HUGE if bad == 1 else ""), data=as_sequence(x, "f"), extractor_hash=self.hash,
            sample_id=1, true_label=-1, labelled=False), label=int(self.pick(0, 3)),
            confidence=float(self.pick(np.nan, 1.5)) if bad == 3 else 1.0, source=9 if bad == 4 else 2,
            label_name=HUGE if bad == 2 else "")

    def truth(self):
        return self.GT(header=self.header(), label=int(self.pick(-2, -2**31, -1)),
                       class_name=self.pick("", self.rare(HUGE, "y" * 64), "\u200d"),
                       learnable=bool(self.rng.random() < .5))

    def prediction(self):
        return self.Prediction(header=self.header(), sample_id=int(self.rng.integers(0, 2**32)),
                               class_id=int(self.pick(-2, -2**31, -100)), class_name=self.pick("", HUGE[:5000]),
                               confidence=float(self.pick(np.nan, np.inf, -1.0, 3e38)))

    def answer(self):
        """An answer to no pending request (unknown, empty, huge ids), with odd classes and names."""
        return self.Answer(header=self.header(), request_id=self.pick("", "nope", "r-999999", HUGE, "\x00"),
                           class_id=int(self.pick(NEW_CLASS, NO_CLASS, 0, 2**31 - 1, -2**31)),
                           new_class_name=self.pick(*BAD_NAMES, "two"), answered_by=self.pick("", HUGE))

    def rename(self):
        """A rename (a LabelAnswer on rename_class) of an unknown class, or of a known one to a name the one rule
        refuses."""
        cid = int(self.pick(0, 1, 7, 2**31 - 1, -2**31, NEW_CLASS, NO_CLASS, 12345))
        return self.Answer(header=self.header(), request_id=self.pick("", "rename-1", HUGE, "\x00"), class_id=cid,
                           new_class_name=self.pick(*BAD_NAMES) if cid in (0, 1) else self.pick("seven", *BAD_NAMES),
                           answered_by=self.pick("", HUGE))


def lines_with(proc, *words) -> int:
    return sum(any(w in ln for w in words) for ln in proc.lines)


def test_board_metrics_and_rce_labeler_survive_hostile_inputs(domain, tmp_path, data_dir, mnist_features):
    bus = create_bus("fuzzer", "/", backend="dds", dds_config="loopback", domain=domain)
    fz = NodeFuzzer(bus, seed=11)
    ns = lambda n: (f"__ns:=/{n}",)  # noqa: E731
    Time, Header = bus.msg("builtin_interfaces/msg/Time"), bus.msg("std_msgs/msg/Header")
    pub = {t: bus.create_publisher(t, typ, qos) for t, typ, qos in (
        ("/bl/labeled", fz.Labeled, "reliable"),
        ("/bi/image", fz.Image, "reliable"), ("/bi/ground_truth", fz.GT, "reliable"),
        ("/m/predictions", fz.Prediction, "reliable"),
        ("/r/features", fz.Features, "reliable"), ("/r/label_answer", fz.Answer, "reliable"),
        ("/r/label_correction", fz.Answer, "reliable"), ("/r/rename_class", fz.Answer, "reliable"))}
    truth_bus = create_bus("truths", "/", backend="dds", dds_config="loopback", domain=domain)
    truth_pub = truth_bus.create_publisher("/m/ground_truth", fz.GT, "reliable")   # gone = the replay ended
    bus.create_subscription("/m/ground_truth", fz.GT, lambda m: None, "reliable")   # to see the writer go (below)
    heads: dict[str, list] = {"bl": [], "bi": []}
    for n in heads:
        bus.create_subscription(f"/{n}/head", "Head", heads[n].append, "latched")
    requests, status = [], []
    bus.create_subscription("/r/label_request", "LabelRequest", requests.append, "reliable")
    bus.create_subscription("/r/label_status", "std_msgs/msg/String", lambda m: status.append(json.loads(m.data)),
                            "reliable")
    dropped: dict[str, int] = {}          # each node's bad_input_dropped, as its /diagnostics last said it
    bus.create_subscription("/diagnostics", "diagnostic_msgs/msg/DiagnosticArray", lambda a: dropped.update(
        {st.name: int(v.value) for st in a.status for v in st.values if v.key == "bad_input_dropped"}), "reliable")
    stamp = [time.time_ns()]

    def header():
        stamp[0] += 1000
        return Header(stamp=ns_to_time(stamp[0], Time))

    with ExitStack() as stack:
        procs = {
            "bl": stack.enter_context(node("board", domain, f"state_dir:={tmp_path / 'bl'}", "publish_every:=1",
                                           remaps=ns("bl"))),
            # a replay's board holds each image for its ground truth: by default (a live camera's) an image that came
            # before its truth went unlabelled, and, with the truths' reader behind the fuzz's 64 KB names, a fresh
            # clone's run learned 10 of the 30 clean images
            "bi": stack.enter_context(node("board", domain, "input:=image", f"state_dir:={tmp_path / 'bi'}",
                                           "image_qos:=reliable", "expect_ground_truth:=true", "truth_timeout_s:=20",
                                           "publish_every:=1", remaps=ns("bi"))),
            "m": stack.enter_context(node("metrics", domain, "window:=50", "idle_timeout_s:=2",
                                          f"out:={tmp_path / 'metrics.json'}", remaps=ns("m"))),
            "r": stack.enter_context(node("labeler", domain, "preset:=rce", f"state_dir:={tmp_path / 'r'}",
                                          "ask_policy:=each", "class_names:={0: zero, 1: one}",
                                          "wait_for_subscribers:=0", remaps=ns("r"))),
        }
        assert spin_until(bus, lambda: all(p.get_subscription_count() for p in pub.values())
                          and truth_pub.get_subscription_count(), 90), {n: p.lines[-5:] for n, p in procs.items()}
        # --- the fuzz -----------------------------------------------------------------------------
        labeled = (lambda: fz.message("labeled"),) * 6 + (fz.labeled_bad_label, fz.labeled_malformed)
        makers = {"/bl/labeled": lambda: fz.pick(*labeled)(),
                  "/bi/image": lambda: fz.message("image"), "/bi/ground_truth": fz.truth,
                  "/m/predictions": fz.prediction, "/r/features": fz.features,
                  "/r/label_answer": fz.answer, "/r/label_correction": fz.answer, "/r/rename_class": fz.rename}
        sent = dict.fromkeys(makers, 0)
        t0 = time.monotonic()
        for i in range(PER_TOPIC):
            for topic, make in makers.items():
                pub[topic].publish(make())
                sent[topic] += 1
            truth_pub.publish(fz.truth())
            if i % 20 == 0:
                bus.spin_once(0.0)
                assert all(p.proc.poll() is None for p in procs.values()), {n: p.lines[-5:] for n, p in procs.items()}
        fuzz_s = time.monotonic() - t0
        # --- clean messages after the fuzz: each node still learns (scores) them --------------------
        X, y = mnist_features.train_rows(np.arange(40)), mnist_features.train_y[:40]
        for x, label in zip(X, y):
            h = header()
            pub["/bl/labeled"].publish(fz.Labeled(header=h, features=fz.Features(
                header=h, data=as_sequence(x.astype(np.float32), "f"), extractor_hash=fz.hash, sample_id=1,
                true_label=int(label), labelled=True), label=int(label), confidence=1.0, source=2))
        images, im_y = load_mnist("train", data_dir)
        for img, label in zip(images[:30], im_y[:30]):
            h = header()
            pub["/bi/ground_truth"].publish(fz.GT(header=h, label=int(label), class_name="", learnable=True))
            pub["/bi/image"].publish(fz.Image(header=h, height=28, width=28, encoding="mono8", step=28,
                                              data=as_sequence(np.ascontiguousarray(img), "B")))
        want = []
        for i, label in enumerate(np.arange(100) % 10):
            h = header()
            truth_pub.publish(fz.GT(header=h, label=int(label), class_name="", learnable=False))
            predicted = int(label) if i % 5 else (int(label) + 1) % 10      # every 5th wrong
            pub["/m/predictions"].publish(fz.Prediction(header=h, sample_id=i, class_id=predicted,
                                                        class_name="", confidence=0.9))
            want.append(predicted == label)
        rng = np.random.default_rng(3)                     # rce: two known classes, then a novel one
        centres = rng.normal(0, 2, (3, fz.n)).astype(np.float32)
        for k in range(6):
            pub["/r/features"].publish(fz.Features(header=header(), data=as_sequence(centres[k % 2], "f"),
                                                   extractor_hash=fz.hash, sample_id=k, true_label=k % 2,
                                                   labelled=True))
        pub["/r/features"].publish(fz.Features(header=header(), data=as_sequence(centres[2], "f"),
                                               extractor_hash=fz.hash, sample_id=9, true_label=-1, labelled=False))
        assert spin_until(bus, lambda: requests, 20), procs["r"].lines[-10:]
        pub["/r/label_answer"].publish(fz.Answer(header=header(), request_id=requests[-1].request_id,
                                                 class_id=NEW_CLASS, new_class_name="two", answered_by="test"))
        assert spin_until(bus, lambda: any(s["status"] == "learned" for s in status), 20), procs["r"].lines[-10:]
        learned = next(s for s in status if s["status"] == "learned")
        assert learned["class_name"] == "two" and learned["class_id"] == 2, learned
        # a 64 KB request id is refused in a status that does not echo it in full
        assert sum(s["status"] == "refused" for s in status) > PER_TOPIC, len(status)
        assert max(len(s["request_id"]) for s in status) == MAX_REQUEST_ID
        assert spin_until(bus, lambda: heads["bl"] and heads["bl"][-1].n_seen == 40, 30), \
            (heads["bl"][-1:] and heads["bl"][-1].n_seen, procs["bl"].lines[-10:])
        assert spin_until(bus, lambda: heads["bi"] and heads["bi"][-1].n_seen == 30, 30), \
            (heads["bi"][-1:] and heads["bi"][-1].n_seen, procs["bi"].lines[-10:])
        # every hostile message to these inputs is refused: counted on /diagnostics, each one (its line is said up to
        # 20 times for one reason, then once a minute with a count: bus.base.InputCounts); the labeler's refusals of
        # the answers, corrections and renames it could read are verdicts too, on label_status
        refused = {"/bl/board": sent["/bl/labeled"], "/bi/board": sent["/bi/image"] + sent["/bi/ground_truth"],
                   "/m/metrics": sent["/m/predictions"] + PER_TOPIC}
        answers = sent["/r/label_answer"] + sent["/r/label_correction"] + sent["/r/rename_class"]
        verdicts = lambda: sum(s["status"] == "refused" for s in status)     # noqa: E731
        assert spin_until(bus, lambda: all(dropped.get(n) == k for n, k in refused.items()) and verdicts() == answers
                          and dropped.get("/r/labeler", 0) >= sent["/r/features"], 15), (dropped, verdicts(), refused)
        truth_bus.shutdown()                               # the replay ended: metrics gives its final scores
        try:
            code = procs["m"].proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            code = (f"still running 60 s after the replay ended; ground_truth writers the test still sees: "
                    f"{bus.count_publishers('/m/ground_truth')}")
        assert code == 0, (code, procs["m"].lines[-10:])
        final = json.loads((tmp_path / "metrics.json").read_text())
        for name in ("bl", "bi", "r"):
            assert procs[name].stop() == 0, procs[name].lines[-10:]
    bus.shutdown()
    errors = {n: lines_with(p, "ERROR") for n, p in procs.items()}
    lines = {n: p.lines for n, p in procs.items()}
    tracebacks = sum("Traceback" in ln for ls in lines.values() for ln in ls)
    print(f"node fuzz: {sum(sent.values()) + PER_TOPIC} hostile messages in {fuzz_s:.1f} s ({PER_TOPIC} per topic); "
          f"error lines: board(labeled) {errors['bl']}, board(image) {errors['bi']}, metrics {errors['m']}, "
          f"rce labeler {errors['r']}; {tracebacks} tracebacks; after it: board heads n_seen "
          f"{heads['bl'][-1].n_seen}/{heads['bi'][-1].n_seen}, metrics accuracy {final['accuracy']:.1f} %, "
          f"rce answer {learned['status']}")
    assert tracebacks == 0
    # and said in a line each, but for a reason said 20 times already (counted above: at most that many lines)
    refused["/r/labeler"] = sum(sent[t] for t in sent if t.startswith("/r/"))
    assert all(0 < errors[n] <= refused[f"/{n}/{name}"] for n, name in
               (("bl", "board"), ("bi", "board"), ("r", "labeler"), ("m", "metrics"))), (errors, refused)
    # the metrics node scored the clean samples, nothing of the hostile ones: the last 50 of them
    assert final["window"] == 50 and abs(final["accuracy"] - 100.0 * np.mean(want[-50:])) < 1e-6, final
