"""Messages whose CDR is broken on the wire, as a peer's bug or a hostile peer sends them (run with the ROS 2 kit's
python, the package built and sourced):

    python3 wire_faults.py learner --namespace /wf --hash HASH --n-features 64 --seed 0
    python3 wire_faults.py board --namespace /board1/tinycl --n-features 64 --hash HASH [--on-stdin]

``learner``: LabeledFeatures on ``<namespace>/labeled`` (rclpy, the project's reliable QoS), after its reader matched:
4 whole samples (classes 0 and 1), then each fault below ``--per-fault`` times, made of whole samples of class 1, then
a whole sample of class 2 and one of class 3 (a reader that knows class 3 has taken every message before it). Prints
one JSON line: ``{"whole": 6, "faults": {fault: count}}``. The faults (each one rmw_cyclonedds cannot deserialize):

- ``cut before its name``: the sample without its last field, ``label_name``; what comes before it is whole (a
  class, a confidence, features), so a node handed the half-filled message learns it;
- ``cut at a random byte`` after the encapsulation header;
- ``a sequence length past the end``: the feature count made 2^31 - 1 (taken as a message, rclpy copied 8 GB);
- ``a string without its NUL``: the name's terminating NUL made a letter.

``board``: what a micro-ROS board (the TinyNDC app) subscribes, once its four readers matched (through the agent): a
LabelAnswer on ``label_answer`` cut in half and one whose request id's length says 2^31 - 1, the same on
``label_correction`` (a change of an answer), then one on ``rename_class`` cut in half and one whose name's length
says 2^31 - 1, then a global Head on ``global_head`` cut in half and one whose weight count says 2^31 - 1, each head
0.3 s after the message before it (the head's topic is latched: the board takes each before the next); then, whole, an answer naming a new class with more bytes than a
name's (``core.names``), and global heads of the board's extractor (``--hash``) with a class name of more characters
than a name's, one that is not UTF-8 and one with a tab. With ``--on-stdin``, once a line comes on stdin (the
caller's moment). Prints ``{"faults": {fault: count}, "names": {message: count}}``. Not a cut of 3 bytes or fewer:
DDS pads the sample to 4 bytes again, and micro-CDR then reads the last string as ending in NULs, a message that
decodes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from rclpy.duration import Duration
from rclpy.serialization import serialize_message

from tinycl_nodes.bus import create_bus
from tinycl_nodes.core.names import MAX_NAME_BYTES, MAX_NAME_CHARS
from tinycl_nodes.interfaces import as_sequence
from tinycl_nodes.nodes.runner import wait_for_readers

ENCAPSULATION = 4           # CDR's encapsulation header, before the message's first byte
BIG = (2**31 - 1).to_bytes(4, "little")     # a length no message has: 2^31 - 1
NAMES = ("walking", "seated", "running", "stairs")


def learner(args: argparse.Namespace, bus) -> dict:
    rng = np.random.default_rng(args.seed)
    LF, F = bus.msg("LabeledFeatures"), bus.msg("Features")
    pub = bus.create_publisher("labeled", LF, "reliable")

    def whole(i: int, label: int) -> bytes:
        x = rng.normal(label * 3.0, 1.0, args.n_features).astype(np.float32)
        return serialize_message(LF(features=F(data=as_sequence(x, "f"), extractor_hash=args.hash, sample_id=i),
                                    label=label, confidence=1.0, source=LF.GROUND_TRUTH, label_name=NAMES[label]))

    def faults(raw: bytes, name: str) -> dict[str, bytes]:
        name_field = 4 + len(name) + 1                  # its length, its letters, its NUL (the last bytes)
        at = raw.index(args.hash.encode()) - 4           # the hash's length: the feature count is just before it
        count = at - 4 * args.n_features - 4
        return {"cut before its name": raw[:-name_field],
                "cut at a random byte": raw[:int(rng.integers(ENCAPSULATION + 1, len(raw) - name_field))],
                "a sequence length past the end": raw[:count] + BIG + raw[count + 4:],
                "a string without its NUL": raw[:-1] + b"x"}

    matched(bus, [pub])
    sent: dict[str, int] = {}
    for i in range(4):
        pub.publish(whole(i, i % 2))
    for k in range(args.per_fault):
        for fault, raw in faults(whole(100 + k, 1), NAMES[1]).items():
            pub.publish(raw)
            sent[fault] = sent.get(fault, 0) + 1
    for i in range(4, 6):
        pub.publish(whole(i, i - 2))
    pub.wait_for_all_acked(Duration(seconds=30))
    return {"whole": 6, "faults": sent}


def board(args: argparse.Namespace, bus) -> dict:
    A, H, CI = bus.msg("LabelAnswer"), bus.msg("Head"), bus.msg("ClassInfo")
    answers = bus.create_publisher("label_answer", A, "reliable")
    corrections = bus.create_publisher("label_correction", A, "reliable")
    renames = bus.create_publisher("rename_class", A, "reliable")
    heads = bus.create_publisher("global_head", H, "latched")
    answer = serialize_message(A(request_id="wire-faults-1", class_id=1, answered_by="wire_faults"))
    rid = answer.index(b"wire-faults-1") - 4                         # the request id's length
    rename = serialize_message(A(request_id="wire-faults-rename", class_id=0, new_class_name="renamed",
                                 answered_by="wire_faults"))
    name = rename.index(b"renamed\0") - 4                           # the new name's length
    w = np.arange(1, 1 + 2 * args.n_features, dtype=np.float32) / 1000

    def head_msg(name: str, extractor_hash: str, version: int) -> bytes:
        """A whole global head of two classes, class 0 named ``name``."""
        return serialize_message(H(classes=[CI(id=0, name=name, sample_count=1), CI(id=1, name="b", sample_count=1)],
                                   kind="CWRStar", n_features=args.n_features, weights=as_sequence(w, "f"),
                                   bias=as_sequence(np.zeros(2, np.float32), "f"), extractor_hash=extractor_hash,
                                   version=version, n_seen=2))

    head = head_msg("a", "0" * 64, 99)
    count = head.index(len(w).to_bytes(4, "little") + w[:1].tobytes())    # the weight count
    faults = (("label_answer cut in half", answers, answer[:len(answer) // 2]),
              ("label_answer request id length past the end", answers, answer[:rid] + BIG + answer[rid + 4:]),
              ("label_correction cut in half", corrections, answer[:len(answer) // 2]),
              ("label_correction request id length past the end", corrections,
               answer[:rid] + BIG + answer[rid + 4:]),
              ("rename_class cut in half", renames, rename[:len(rename) // 2]),
              ("rename_class name length past the end", renames, rename[:name] + BIG + rename[name + 4:]),
              ("global_head cut in half", heads, head[:len(head) // 2]),
              ("global_head weight count past the end", heads, head[:count] + BIG + head[count + 4:]))

    def named(name: str) -> bytes:
        """A global head of the board's extractor, whole but for class 0's name."""
        return head_msg(name, args.hash, 98)

    # well-formed, each with a name no node keeps (core.names)
    not_utf8 = named("\u00e4" * 4).replace("\u00e4".encode() * 4, b"\xc3(\xc3(\xc3(\xc3(")
    names = (("label_answer new class name longer than a name's bytes", answers,
              serialize_message(A(request_id="wire-faults-2", class_id=A.NEW_CLASS,
                                  new_class_name="n" * (MAX_NAME_BYTES + 1), answered_by="wire_faults"))),
             ("global_head class name of more characters than a name's", heads, named("\u00e4" * (MAX_NAME_CHARS + 1))),
             ("global_head class name not UTF-8", heads, not_utf8),
             ("global_head class name with a control character", heads, named("tab\there")))
    matched(bus, [answers, corrections, renames, heads])
    if args.on_stdin:
        sys.stdin.readline()
    for _, pub, raw in faults + names:
        if pub is heads:
            time.sleep(0.3)
        pub.publish(raw)
    for pub in (answers, corrections, renames, heads):
        pub.wait_for_all_acked(Duration(seconds=30))
    return {"faults": {name: 1 for name, _, _ in faults}, "names": {name: 1 for name, _, _ in names}}


def matched(bus, pubs: list, timeout_s: float = 60.0) -> None:
    """The nodes' own wait for readers (``runner.wait_for_readers``); none in time ends the run."""
    if not wait_for_readers(bus, pubs, timeout_s, bus.logger):
        raise SystemExit(f"wire_faults: no reader matched in {timeout_s:.0f} s")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("to", choices=["learner", "board"])
    ap.add_argument("--namespace", required=True)
    ap.add_argument("--hash", default="")
    ap.add_argument("--n-features", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--per-fault", type=int, default=5)
    ap.add_argument("--on-stdin", action="store_true", help="board: send once a line comes on stdin")
    args = ap.parse_args()
    bus = create_bus("wire_faults", args.namespace, backend="ros2")
    print(json.dumps((learner if args.to == "learner" else board)(args, bus)), flush=True)
    bus.shutdown()


if __name__ == "__main__":
    main()
