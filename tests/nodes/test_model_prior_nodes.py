"""The learner node starts its head from the model's class statistics (model_prior.py) under the tinycl preset,
not with ``model_prior:=false``, and a corrupt statistics file is one error line: the node runs on without it.
(That the labeler's clusters and replica start from them too, the same way, is test_graph.py's in-process
equality: the in-process loop takes the prior in.)"""

from __future__ import annotations

import shutil
import time

from tinycl_nodes.extractor import MODELS_DIR
from tinycl_nodes.storage import load_states

from .conftest import node

STARTS = "the head starts from the model's class statistics (36017 training images of classes [0, 1, 2, 3, 4, 5])"


def _saved_counts(state_dir) -> dict[int, int]:
    """Class id → samples of the head the learner saved when it stopped."""
    arrays = load_states(state_dir / "learner.state")["head"]["arrays"]
    return dict(zip(arrays["classes"].tolist(), arrays["counts"].tolist()))


def test_learner_starts_from_the_models_class_statistics_unless_told_not_to(domain, tmp_path):
    with node("learner", domain, f"state_dir:={tmp_path / 'a'}") as learner:
        learner.wait_for_line(STARTS)
    assert learner.proc.returncode == 0 and sum(_saved_counts(tmp_path / "a").values()) == 36017
    with node("learner", domain, f"state_dir:={tmp_path / 'b'}", "model_prior:=false") as learner:
        time.sleep(4)                                   # started and saved nothing learned yet at its stop
    assert learner.proc.returncode == 0 and _saved_counts(tmp_path / "b") == {}, learner.lines
    assert not any("class statistics" in ln for ln in learner.lines), learner.lines


def test_a_corrupt_class_statistics_file_is_one_error_line_and_the_learner_runs_on(domain, tmp_path):
    for f in ("mnist_0to5_fp32.onnx", "mnist_0to5_fp32.range.json", "mnist_0to5.json"):
        shutil.copy(MODELS_DIR / f, tmp_path / f)
    (tmp_path / "mnist_0to5_fp32.classes").write_bytes(b"\x00" * 100)
    with node("learner", domain, f"state_dir:={tmp_path / 's'}", f"model:={tmp_path / 'mnist_0to5_fp32.onnx'}") as n:
        line = n.wait_for_line("mnist_0to5_fp32.classes: state: payload is not a tinycl state file")
        assert "[ERROR]" in line and line.endswith("not used, learning starts from the labelled samples alone"), line
        time.sleep(1)
        assert n.proc.poll() is None, n.lines
    assert n.proc.returncode == 0 and _saved_counts(tmp_path / "s") == {}, n.lines   # ran on from nothing
    assert not any("Traceback" in ln for ln in n.lines), n.lines
