"""A labeler's start: more labelled samples than its clusters start from are all passed on, none dropped."""

from __future__ import annotations

from tinycl_nodes.bus import create_bus
from tinycl_nodes.datasets import load_mnist
from tinycl_nodes.extractor import FrozenExtractor, model_path
from tinycl_nodes.interfaces import as_sequence, ns_to_time
from tinycl_nodes.nodes.labeler import INIT_MAX

from .conftest import node, spin_until


def test_labelled_samples_past_the_clusters_start_are_learned_not_dropped(domain, tmp_path):
    """INIT_MAX + 10 labelled samples before the first unlabelled one: the clusters start from the first INIT_MAX
    (the first 1,000 of them weigh the class statistics, as in the learner) and the other 10 are learned as they
    come; every one reaches the learner as ground truth, in order. (Before, the oldest were dropped, unlearned, and
    the learner's first 1,000 were no longer the labeler's.)"""
    n = INIT_MAX + 10
    X, y = load_mnist("train")
    ext = FrozenExtractor(model_path("mnist_0to5_fp32"))
    F = ext.extract(X[:n + 1])
    bus = create_bus("tester", backend="dds", dds_config="loopback", domain=domain)
    Features, Header, Time = bus.msg("Features"), bus.msg("std_msgs/msg/Header"), bus.msg("builtin_interfaces/msg/Time")
    got: list = []
    bus.create_subscription("labeled", "LabeledFeatures", got.append, "reliable")
    pub = bus.create_publisher("features", Features, "reliable")
    try:
        with node("labeler", domain, f"state_dir:={tmp_path}") as labeler:
            assert spin_until(bus, lambda: pub.get_subscription_count() > 0, 30), labeler.lines
            for i in range(n + 1):
                pub.publish(Features(header=Header(stamp=ns_to_time(10**18 + i, Time)),
                                     data=as_sequence(F[i], "f"), extractor_hash=ext.hash, sample_id=i + 1,
                                     true_label=int(y[i]), labelled=i < n))
            assert spin_until(bus, lambda: len(got) == n + 1, 120), (len(got), labeler.lines[-5:])
            line = labeler.wait_for_line("clusters initialised from")
    finally:
        bus.shutdown()
    assert f"clusters initialised from {INIT_MAX} labelled samples (10 classes)" in line, line
    truth = [m for m in got if m.source == m.GROUND_TRUTH]
    assert [m.features.sample_id for m in truth] == list(range(1, n + 1))
    assert [m.label for m in truth] == y[:n].tolist()
    assert got[-1].features.sample_id == n + 1 and got[-1].source == got[-1].PSEUDO
    assert not any("Traceback" in ln or "dropped" in ln for ln in labeler.lines), labeler.lines
