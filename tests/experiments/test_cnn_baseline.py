"""The end-to-end CNN baseline's MAC count is exact from the layer shapes (no PyTorch needed)."""

import json

from tinycl_nodes.experiments.cnn_baseline import layer_macs, learning_macs, n_params
from tinycl_nodes.extractor import model_path
from tinycl_nodes.training.make_elm import SPECS


def test_har_cnn_macs_by_hand():
    # conv 6→24, k5, stride 1 on 50 samples: 50·24·6·5; conv 24→32, k5, stride 2: 25·32·24·5; linear 64→5
    assert layer_macs(SPECS["har"], 5) == [36000, 96000, 320]
    assert n_params(SPECS["har"], 5) == (24 * 6 * 5 + 24) + (32 * 24 * 5 + 32) + (64 * 5 + 5)
    per_sample = 3 * (36000 + 96000 + 320) - 36000      # no input gradient for the first layer
    assert learning_macs(SPECS["har"], 5, n_train=100, epochs=2, minibatch=32) == 2 * 100 * per_sample + 2 * 4 * 4941


def test_conv_part_matches_the_elm_sidecar():
    for name in ("har", "cwru"):
        side = json.loads(model_path(f"{name}_elm").with_suffix(".json").read_text())
        assert sum(layer_macs(SPECS[name], 10)[:-1]) == side["conv_macs"]
