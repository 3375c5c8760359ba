"""The TinyRCE labeler sends its open questions again to a reader matched after them (a label app started later), and
to no reader twice: a reader matched between two of its 1 s ticks, just before a question, got that question again at
the next tick (the tick's count of readers was up to 1 s old). Two tests that count the questions a probe received
failed so in fresh-clone runs. A real labeler on the local bus, MNIST digits through the real extractor."""

from __future__ import annotations

import numpy as np

from tests.nodes.test_labeler_checkpoints import CameraLabeler
from tinycl_nodes.datasets import load_mnist
from tinycl_nodes.extractor import FrozenExtractor, model_path


def test_a_question_goes_once_to_a_reader_matched_before_it_and_again_to_one_matched_after(tmp_path, data_dir):
    X, y = load_mnist("test", data_dir)
    feats = FrozenExtractor(model_path("mnist_0to5_fp32")).extract(np.concatenate([X[y == 0][:10], X[y == 7][:1]]))
    cam = CameraLabeler(tmp_path, save_period_s=3600.0, min_group=1)
    lab = cam.lab
    for f in feats[:10]:
        cam.send(f, 0)
    lab._tick()                                       # no reader of label_request yet: the count it keeps is 0
    early: list = []
    cam.bus.create_subscription("label_request", "LabelRequest", early.append, "reliable")   # matched between ticks
    cam.send(feats[-1])                               # a 7: asked at once
    assert len(early) == 1 and len(lab.requests.pending) == 1
    lab._tick()
    assert len(early) == 1                            # was 2: the tick sent it again to the reader that had it
    late: list = []
    cam.bus.create_subscription("label_request", "LabelRequest", late.append, "reliable")    # a label app started now
    lab._tick()
    assert [r.request_id for r in late] == [early[0].request_id]
    lab._tick()
    assert len(late) == 1
    lab.close()
