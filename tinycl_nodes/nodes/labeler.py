"""labeler node: features → labelled features, by TinyNDC online clustering (pseudo-labels).

It runs the preset's whole TinyNDC loop: the clusterer pseudo-labels, and its centroids follow the
active head's prediction. The head it uses for that is a replica of the learner's: it learns
exactly the labels this node publishes, in the same order, so it equals the learner's head
without a feedback topic (and the graph learns exactly what the in-process experiment learns).
Labelled samples (``Features.labelled``) initialise the clusters; until one has arrived an
unlabelled sample cannot be pseudo-labelled and is dropped with one error line.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from pydantic import Field

from .. import presets
from ..core.errors import TinyclError
from ..extractor import FrozenExtractor, model_path
from .messages import features_of
from .runner import Node, NodeParams, run_node
from .state_file import StateFile

PRESETS = {"tinyndc": presets.tinyndc_paper, "tinycl": presets.tinycl_best, "clustering": presets.clustering_only}


class LabelerParams(NodeParams):
    preset: Literal["tinyndc", "tinycl", "clustering"] = "tinycl"
    model: str = "mnist_0to5_fp32"           # the extractor the features come from (hash + size)
    state_dir: str | None = None
    save_every: int = Field(1000, ge=1)      # samples between two state saves (and at exit)


class Labeler(Node):
    Params = LabelerParams

    def __init__(self, bus: Any, params: LabelerParams) -> None:
        super().__init__(bus, params)
        extractor = FrozenExtractor(model_path(params.model))
        self.hash, self.n_features = extractor.hash, extractor.n_features
        self.system = PRESETS[params.preset](self.n_features, self.hash)
        self.initialised = False
        self._init_buffer: list[tuple[Any, np.ndarray, int]] = []
        self._since_save = 0
        self._warned_uninitialised = False
        self.state = StateFile(params.state_dir, "labeler", self.log)
        self._restore()
        self.LabeledFeatures = bus.msg("LabeledFeatures")
        self.pub = bus.create_publisher("labeled", self.LabeledFeatures, "reliable")
        self.downstream = [self.pub]
        bus.create_subscription("features", "Features", self.on_features, "reliable")

    def _restore(self) -> None:
        saved = self.state.load()
        if not saved:
            return
        if self.system.clusterer is not None and "clusterer" in saved:
            self.system.clusterer.load_state_dict(saved["clusterer"])
        if self.system.head is not None and "head" in saved:
            self.system.head.load_state_dict(saved["head"])
        self.initialised = True
        self.log.info("restored state from %s", self.state.path)

    def on_features(self, msg: Any) -> None:
        x = features_of(msg, self.n_features, self.hash)
        if msg.labelled and msg.true_label >= 0:
            if not self.initialised:
                self._init_buffer.append((msg, x, int(msg.true_label)))
                return
            self.system.step(x, int(msg.true_label))
            self._publish(msg, int(msg.true_label), 1.0, self.LabeledFeatures.GROUND_TRUTH)
            return
        if not self.initialised and not self._initialise():
            return
        step = self.system.step(x)
        self._publish(msg, step.pseudo_label if step.learned else -1, step.confidence, self.LabeledFeatures.PSEUDO)
        self._since_save += 1
        if self._since_save >= self.params.save_every:
            self.close()

    def _initialise(self) -> bool:
        """Initialise the clusters from the labelled samples so far, and pass them on in order."""
        if not self._init_buffer:
            if not self._warned_uninitialised:
                self.log.error("no labelled sample yet: cannot pseudo-label, dropping unlabelled samples")
                self._warned_uninitialised = True
            return False
        msgs, X, y = zip(*self._init_buffer)
        self.system.init_from_labelled(np.stack(X), list(y))
        for msg, label in zip(msgs, y):
            self._publish(msg, label, 1.0, self.LabeledFeatures.GROUND_TRUTH)
        self.log.info("clusters initialised from %d labelled samples (%d classes)", len(y), len(set(y)))
        self._init_buffer.clear()
        self.initialised = True
        return True

    def _publish(self, features: Any, label: int, confidence: float, source: int) -> None:
        self.pub.publish(self.LabeledFeatures(header=features.header, features=features, label=label,
                                              confidence=confidence, source=source))

    def close(self) -> None:
        self._since_save = 0
        if not self.initialised:
            return
        states = {}
        if self.system.clusterer is not None:
            states["clusterer"] = self.system.clusterer.state_dict()
        if self.system.head is not None:
            states["head"] = self.system.head.state_dict()
        self.state.save(states)


def main(argv: list[str] | None = None) -> int:
    return run_node(Labeler, "labeler", argv)


if __name__ == "__main__":
    raise SystemExit(main())
