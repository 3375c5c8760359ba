"""``tinycl state``: what a node's checkpoint holds and what its journal adds, read from the files a real learner
wrote (on the local bus, in process), without starting it; a state file that cannot be used is said, not a
traceback."""

from __future__ import annotations

import json

import numpy as np

from tests.nodes.test_bad_input import _sample
from tinycl_nodes.bus import create_bus
from tinycl_nodes.bus.local import LocalGraph
from tinycl_nodes.cli import main
from tinycl_nodes.extractor import FrozenExtractor, model_path
from tinycl_nodes.nodes.learner import Learner, LearnerParams


def test_state_report_counts_the_checkpoint_and_the_journal_beyond_it(tmp_path, capsys):
    xhash = FrozenExtractor(model_path("mnist_0to5_fp32")).hash
    graph = LocalGraph()
    learner = Learner(create_bus("learner", "/", backend="local", graph=graph),
                      LearnerParams(preset="supervised", state_dir=str(tmp_path), save_every=50,
                                    save_period_s=3600.0, publish_every=10_000, publish_period_s=3600.0))
    learner.bring_up()
    tester = create_bus("tester", "/", backend="local", graph=graph)
    pub = tester.create_publisher("labeled", "LabeledFeatures", "reliable")
    rng = np.random.default_rng(0)
    for i in range(70):                          # a checkpoint at the 50th, then 20 in the journal
        pub.publish(_sample(tester, rng.normal(0, 1, 64), i % 3, xhash, 10**9 + i))
    learner.state.flush()
    assert learner.head.n_seen == 70

    assert main(["state", "--state-dir", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    (node,) = out["nodes"]
    assert node["node"] == "learner" and not node["error"]
    assert "3 classes" in node["parts"]["head"] and "50 samples" in node["parts"]["head"], node["parts"]
    assert node["journal_records"] == 20 and node["journal_bytes"] > 20 * 64 * 4

    (tmp_path / "board.state").write_bytes(b"not a state file")        # what a node would set aside
    (tmp_path / "labeler.state.bad-20261204T000000").write_bytes(b"")
    (tmp_path / "labeler.journal-3.bad-20261204T000000").write_bytes(b"")     # its journal, set aside with it
    assert main(["state", "--state-dir", str(tmp_path), "--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    board = next(n for n in out["nodes"] if n["node"] == "board")
    assert board["error"].startswith("state:") and not board["parts"], board
    assert out["set_aside"] == ["labeler.journal-3.bad-20261204T000000", "labeler.state.bad-20261204T000000"]
    assert main(["state", "--state-dir", str(tmp_path)]) == 1          # the table, with the same verdict
    table = capsys.readouterr().out
    assert "learner" in table and "20 records" in table and "cannot be used" in table, table
    learner.close()


def test_state_report_without_state_is_one_line(tmp_path, capsys):
    assert main(["state", "--state-dir", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no learned state in" in err, err


def test_a_state_of_odd_shapes_and_a_journal_segment_that_is_a_folder_are_reported(tmp_path, capsys, caplog):
    """A checkpoint whose ``classes`` is a 0-d array was a TypeError (len() of unsized object); a folder named like a
    journal segment an IsADirectoryError, in `tinycl state` and in the learner's replay."""
    from tinycl_nodes.core.state import make_state
    from tinycl_nodes.storage import JOURNAL_ENTRY, save_states

    save_states(tmp_path / "learner.state", {
        "head": make_state("CWRStar", 1, {}, {"classes": np.array(3), "y": np.array(1), "X": np.zeros(2)}, {}),
        JOURNAL_ENTRY: make_state("Journal", 1, {}, {}, {"segment": 2})})
    (tmp_path / "learner.journal-2").mkdir()
    assert main(["state", "--state-dir", str(tmp_path), "--json"]) == 0
    (node,) = json.loads(capsys.readouterr().out)["nodes"]
    assert node["parts"]["head"] == "CWRStar, 1 classes, 1 labelled samples kept" and node["journal_records"] == 0
    assert "learner.journal-2 cannot be read (Is a directory)" in caplog.text
    (tmp_path / "labeler.state").symlink_to("labeler.state")          # skipped without a word, exit 0
    assert main(["state", "--state-dir", str(tmp_path), "--json"]) == 1
    nodes = {n["node"]: n for n in json.loads(capsys.readouterr().out)["nodes"]}
    assert nodes["labeler"]["error"] == "state: labeler.state is not a file" and not nodes["learner"]["error"]


def test_a_learner_whose_labelled_samples_cannot_be_used_keeps_its_head(tmp_path, caplog):
    """A checkpoint whose checksum holds but whose labelled part has another shape (a build that kept them otherwise)
    was set aside whole: the head's 70 samples were lost with it."""
    import logging

    from tinycl_nodes.storage import load_states, save_states

    xhash = FrozenExtractor(model_path("mnist_0to5_fp32")).hash
    params = LearnerParams(preset="supervised", state_dir=str(tmp_path), save_every=10, publish_every=10_000,
                           publish_period_s=3600.0)
    graph = LocalGraph()
    learner = Learner(create_bus("learner", "/", backend="local", graph=graph), params)
    learner.bring_up()
    tester = create_bus("tester", "/", backend="local", graph=graph)
    pub = tester.create_publisher("labeled", "LabeledFeatures", "reliable")
    rng = np.random.default_rng(0)
    for i in range(70):
        pub.publish(_sample(tester, rng.normal(0, 1, 64), i % 3, xhash, 10**9 + i))
    learner.close()
    saved = load_states(tmp_path / "learner.state")
    assert saved["labelled"]["arrays"]["X"].shape[1] == 64 and saved["head"]["meta"]["n_seen"] == 70
    saved["labelled"]["arrays"]["X"] = np.zeros((len(saved["labelled"]["arrays"]["y"]), 10), np.float32)
    save_states(tmp_path / "learner.state", saved)
    with caplog.at_level(logging.ERROR):
        again = Learner(create_bus("learner", "/", backend="local", graph=LocalGraph()), params)
        again.bring_up()
    assert again.head.n_seen == 70                                  # the head is back
    assert "its labelled samples cannot be used" in caplog.text and "the head is restored without them" in caplog.text
    kept = [p for p in tmp_path.iterdir() if p.name.startswith("learner.state.bad-")]
    assert len(kept) == 1 and kept[0].name in caplog.text
    assert load_states(kept[0])["labelled"]["arrays"]["X"].shape[1] == 10       # the file as it was
    again.close()
