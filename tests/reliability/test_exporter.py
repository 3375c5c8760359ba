"""The exporter: the C header compiles for every head kind (whole-number weights included) and
predicts like the head; a peer cannot choose the output folder or inject C through a Head."""

from __future__ import annotations

import logging
import shutil
import subprocess
from types import SimpleNamespace

import numpy as np
import pytest

from tinycl_nodes.bus import create_bus
from tinycl_nodes.bus.local import LocalGraph
from tinycl_nodes.core.errors import InputError
from tinycl_nodes.core.names import MAX_NAME_CHARS
from tinycl_nodes.export.head_export import to_c_header
from tinycl_nodes.extractor import FrozenExtractor, model_path
from tinycl_nodes.nodes.exporter import Exporter, ExporterParams
from tinycl_nodes.core.federated import HeadSnapshot
from tinycl_nodes.interfaces.heads import MAX_WEIGHT, from_msg
from tinycl_nodes.presets import HEADS

CC = shutil.which("cc") or shutil.which("gcc")
MAIN = ('#include <stdio.h>\n#include "head.h"\nint main(void){float x[TINYCL_HEAD_N_FEATURES];'
        'for(int c=0;c<TINYCL_HEAD_N_CLASSES;++c) printf("%s\\x01", tinycl_head_class_names[c]);'
        'for(;;){for(int j=0;j<TINYCL_HEAD_N_FEATURES;++j) if(scanf("%f",&x[j])!=1) return 0;'
        'printf("%d\\n",(int)tinycl_head_class_ids[tinycl_head_predict_row(x)]);}}\n')
NASTY_NAMES = ['a "quoted" */ name', "back\\slash", "tri??/graph", "new\nline", "ünï\u200dcode", "x */ int y; /*"]


def compile_and_run(tmp_path, header: str, X: np.ndarray) -> tuple[list[str], list[str]]:
    """(class names, predicted class id per row of X) from the compiled header."""
    (tmp_path / "head.h").write_text(header)
    (tmp_path / "main.c").write_text(MAIN)
    exe = tmp_path / "predict"
    r = subprocess.run([CC, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", f"-I{tmp_path}",
                        str(tmp_path / "main.c"), "-o", str(exe)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[:2000]
    text = "\n".join(" ".join(f"{v:.9g}" for v in row) for row in X)
    out = subprocess.run([str(exe)], input=text.encode(), capture_output=True, check=True).stdout.decode()
    *names, preds = out.split("\x01")
    return names, preds.split()


@pytest.mark.parametrize("kind", sorted(HEADS) + ["whole_numbers"])
def test_c_header_compiles_and_predicts_for_every_head_kind(kind, tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(0, 2, (40, 16)).astype(np.float32)
    if kind == "whole_numbers":    # 0, 1, -3: printed "0f" before, which is not C
        W, b = rng.integers(-3, 4, (3, 16)).astype(np.float32), np.zeros(3, np.float32)
        classes, hkind = [4, 7, 9], "CWRStar"
    else:
        head = HEADS[kind](16, "")
        for i, x in enumerate(X):
            head.learn_one(x, [4, 7, 9][i % 3])
        head.learn_one(X[0], 11)          # a class with one sample: CWR* leaves rows of zeros
        W, b = head.linear()
        classes, hkind = head.classes, head.kind
    names = (NASTY_NAMES * 3)[:len(classes)]
    lin = HeadSnapshot(list(classes), names, [1] * len(classes), W.astype(np.float32), b.astype(np.float32), hkind,
                     "ab" * 32, 3, 40)
    got_names, preds = compile_and_run(tmp_path, to_c_header(lin), X)
    assert got_names == names                      # names round-trip byte for byte: nothing injected
    assert preds == [str(classes[int(np.argmax(W @ x + b))]) for x in X]


def test_an_slda_head_is_exported_as_it_predicts_between_refreshes(tmp_path):
    """The learner's streaming-LDA head scores with a cache rebuilt every 25 samples; the exported ONNX and C head
    are that cache (it was rebuilt from the statistics in the message's state, which predicted otherwise)."""
    import onnxruntime as ort
    from tinycl_nodes.core.slda import StreamingLDA
    from tinycl_nodes.nodes.messages import head_message

    bus = create_bus("exporter", "/", backend="local", graph=LocalGraph())
    ex = Exporter(bus, ExporterParams(out_dir=str(tmp_path / "out"), period_s=0))
    rng = np.random.default_rng(1)
    head = StreamingLDA(64, refresh_every=25, extractor_hash=ex.hash)
    centres = rng.normal(0, 1, (3, 64))
    for i in range(3 * 25 + 12):
        head.learn_one((centres[i % 3] + rng.normal(0, 1.5, 64)).astype(np.float32), i % 3)
    assert head._stale > 0                    # samples learned since its cache was last rebuilt
    X = (centres[rng.integers(0, 3, 3000)] + rng.normal(0, 1.5, (3000, 64))).astype(np.float32)
    live = np.array([head.predict_one(x) for x in X])
    fresh = HEADS["slda"](64, ex.hash)
    fresh.load_state_dict(head.state_dict())
    fresh.refresh()
    assert (np.array([fresh.predict_one(x) for x in X]) != live).any()   # a fresh cache would predict otherwise
    pub = create_bus("peer", "/", backend="local", graph=bus.graph)
    Head, Header = pub.msg("Head"), type(pub.msg("Head")().header)
    pub.create_publisher("head", Head, "latched").publish(
        head_message(Head, pub.msg("ClassInfo"), head, 1, Header(), with_state=True))
    S = pub.msg("std_msgs/msg/String")
    pub.create_publisher("export_request", S).publish(S(data=""))
    session = ort.InferenceSession(str(tmp_path / "out" / "head.onnx"), providers=["CPUExecutionProvider"])
    assert (session.run(["class_id"], {"features": X})[0] == live).all()
    _, c_preds = compile_and_run(tmp_path, (tmp_path / "out" / "head.h").read_text(), X[:300])
    assert c_preds == [str(c) for c in live[:300]]


def fake_head(kind: str, extractor_hash: str, **kw):
    ci = SimpleNamespace(id=1, name="one", sample_count=1)
    base = dict(classes=[ci], n_features=64, weights=[0.5] * 64, bias=[0.0], extractor_hash=extractor_hash,
                version=2, n_seen=1, kind=kind, state=[])
    return SimpleNamespace(**(base | kw))


@pytest.mark.parametrize("kind", ["CWRStar */ int evil(void){return 1;} /*", "x\ny", "", "a" * 65, "#include"])
def test_a_head_kind_that_is_not_a_name_is_refused(kind):
    h = FrozenExtractor(model_path("mnist_0to5_fp32")).hash
    with pytest.raises(InputError, match="is not a head of the core"):
        from_msg(fake_head(kind, h), h)
    lin = HeadSnapshot([1], ["one"], [1], np.ones((1, 4), np.float32), np.zeros(1, np.float32), kind, h, 1, 1)
    with pytest.raises(ValueError, match="refused"):
        to_c_header(lin)


def test_a_head_with_a_class_name_longer_than_a_learner_gives_is_refused():
    """A learner cuts class names to MAX_NAME_CHARS; a head with a longer one (64 KB: any node may publish ``head``)
    went into the exported C header and ONNX, and into the fleet's rounds."""
    h = FrozenExtractor(model_path("mnist_0to5_fp32")).hash
    with pytest.raises(InputError, match=f"class 1's name is 65536 characters, at most {MAX_NAME_CHARS}"):
        from_msg(fake_head("CWRStar", h, classes=[SimpleNamespace(id=1, name="n" * 65536, sample_count=1)]), h)
    longest = [SimpleNamespace(id=1, name="n" * MAX_NAME_CHARS, sample_count=1)]
    assert list(from_msg(fake_head("CWRStar", h, classes=longest), h).class_names) == ["n" * MAX_NAME_CHARS]


def test_a_head_whose_scores_would_overflow_is_refused():
    """Weights of 1e38 (finite) were exported: the C header's and the ONNX's scores were inf, their probabilities
    NaN."""
    h = FrozenExtractor(model_path("mnist_0to5_fp32")).hash
    for weights, bias in (([1e38] * 64, [0.0]), ([0.5] * 64, [-1e38])):
        with pytest.raises(InputError, match="its scores would overflow"):
            from_msg(fake_head("CWRStar", h, weights=weights, bias=bias), h)
    assert from_msg(fake_head("CWRStar", h, weights=[MAX_WEIGHT] * 64), h).weights.max() == np.float32(MAX_WEIGHT)


@pytest.mark.parametrize("request_path", ["../outside", "/tmp/elsewhere", "a/../../b", "x" * 300, "sub\n/x",
                                          "~/home"])
def test_export_request_cannot_leave_the_export_folder(request_path, tmp_path, caplog):
    out = tmp_path / "export"
    bus = create_bus("exporter", "/", backend="local", graph=LocalGraph())
    ex = Exporter(bus, ExporterParams(out_dir=str(out), period_s=0))
    pub = create_bus("peer", "/", backend="local", graph=bus.graph)
    Head, CI, S = pub.msg("Head"), pub.msg("ClassInfo"), pub.msg("std_msgs/msg/String")
    head = fake_head("CWRStar", ex.hash)
    head_pub = pub.create_publisher("head", Head, "latched")
    head_pub.publish(Head(classes=[CI(id=1, name="one", sample_count=1)], n_features=64, weights=head.weights,
                          bias=head.bias, extractor_hash=ex.hash, version=2, n_seen=1, kind="CWRStar"))
    assert ex.head is not None
    req = pub.create_publisher("export_request", S, "reliable")
    with caplog.at_level(logging.ERROR):
        req.publish(S(data=request_path))
    assert "must be empty or a sub-folder" in caplog.text
    files = [p for p in tmp_path.rglob("*") if p.is_file() and p.name != ".exporter.state.lock"]   # (the node's, at start)
    assert files == [], files                      # nothing written anywhere
    req.publish(S(data="nightly/v2"))              # a sub-folder of the export folder is fine
    assert (out / "nightly" / "v2" / "head.h").is_file() and (out / "nightly" / "v2" / "head.onnx").is_file()


def test_the_header_names_how_it_is_written_again():
    """It said "regenerate with … `tinycl export`", a command there is not."""
    lin = HeadSnapshot([1], ["one"], [1], np.ones((1, 4), np.float32), np.zeros(1, np.float32), "CWRStar", "ab" * 32,
                       1, 1)
    comment = to_c_header(lin).split("*/")[0]
    assert "tinycl export" not in comment
    assert "exporter node" in comment and "export_request" in comment and "period_s" in ExporterParams.model_fields


def test_exporter_keeps_its_last_head_across_a_restart(tmp_path):
    """A request after a restart exports the last head even before the learner publishes again."""
    def exporter(graph):
        bus = create_bus("exporter", "/", backend="local", graph=graph)
        return Exporter(bus, ExporterParams(out_dir=str(tmp_path / "out"), state_dir=str(tmp_path / "state"),
                                            period_s=0)), bus
    ex, bus = exporter(LocalGraph())
    Head, CI = bus.msg("Head"), bus.msg("ClassInfo")
    pub = create_bus("peer", "/", backend="local", graph=bus.graph).create_publisher("head", Head, "latched")
    pub.publish(Head(classes=[CI(id=3, name="three", sample_count=5)], n_features=64, weights=[0.25] * 64,
                     bias=[0.0], extractor_hash=ex.hash, version=7, n_seen=5, kind="CWRStar"))
    ex.close()                                      # exit: saves
    again, bus2 = exporter(LocalGraph())            # a new graph: nobody publishes a head
    assert again.head is not None and again.head.version == 7 and again.head.class_names == ("three",)
    (tmp_path / "out" / "head.h").unlink()         # written at the first one's exit
    S = bus2.msg("std_msgs/msg/String")
    create_bus("peer", "/", backend="local", graph=bus2.graph).create_publisher("export_request", S).publish(S(data=""))
    assert "tinycl_head_class_names" in (tmp_path / "out" / "head.h").read_text()


def test_a_head_published_while_the_graph_stops_is_exported(domain, tmp_path):
    """`ros2 launch` signals every node at once, and the learner publishes its final head as it stops: the exporter,
    stopped first here, waits while the head's writer is up and exports the head sent 1 s after its own signal (it
    waited 0.2 s and wrote nothing before)."""
    import signal
    import time

    import onnxruntime as ort

    from tinycl_nodes.core import CWRStar
    from tinycl_nodes.nodes.messages import head_message

    from .conftest import node

    bus = create_bus("learner_stopping", backend="dds", dds_config="loopback", domain=domain)
    pub = bus.create_publisher("head", "Head", "latched")
    head = CWRStar(64, extractor_hash=FrozenExtractor(model_path("mnist_0to5_fp32")).hash, batch_size=1)
    for c in range(3):
        head.learn_one(np.eye(64, dtype=np.float32)[c] * 5, c)
    try:
        with node("exporter", domain, f"out_dir:={tmp_path}", "period_s:=0",
                  f"state_dir:={tmp_path / 'state'}") as exporter:
            end = time.monotonic() + 20
            while pub.get_subscription_count() == 0 and time.monotonic() < end:
                bus.spin_once(0.05)
            assert pub.get_subscription_count() > 0, "the exporter did not subscribe to head"
            exporter.proc.send_signal(signal.SIGINT)
            time.sleep(1.0)
            pub.publish(head_message(bus.msg("Head"), bus.msg("ClassInfo"), head, 7, bus.msg("std_msgs/msg/Header")()))
            bus.spin_once(0.3)
            bus.shutdown()                     # the learner's writer goes with its process
            assert exporter.proc.wait(15) == 0, "\n".join(exporter.lines[-20:])
    finally:
        bus.shutdown()
    meta = ort.InferenceSession(str(tmp_path / "head.onnx"),
                                providers=["CPUExecutionProvider"]).get_modelmeta().custom_metadata_map
    assert meta["version"] == "7"
