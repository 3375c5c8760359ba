"""exporter node: writes the learned head as ONNX and as a C header, on request and on a period.

Request: a ``std_msgs/String`` on ``export_request`` (empty = the configured folder). A head
trained on another frozen extractor is refused with one line; the files are written atomically.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from pydantic import Field

from ..export.head_export import to_c_header, to_onnx
from ..core.federated import HeadSnapshot
from ..extractor import FrozenExtractor, model_path
from ..interfaces.heads import from_msg
from ..storage import write_atomic
from .runner import Node, NodeParams, run_node, state_dir


class ExporterParams(NodeParams):
    model: str = Field("mnist_0to5_fp32", description="the extractor the head must be built on (name or .onnx "
                                                      "path); heads on another extractor are refused")
    out_dir: str | None = Field(None, description="export folder (default $ROS_HOME/tinycl/<namespace>/export)")
    period_s: float = Field(10.0, ge=0, description="seconds between exports of a changed head; 0 = only on "
                                                    "request and at exit")
    name: str = Field("head", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                      description="files <name>.onnx and <name>.h; the C identifiers are prefixed tinycl_<name>")


class Exporter(Node):
    Params = ExporterParams

    def __init__(self, bus: Any, params: ExporterParams) -> None:
        super().__init__(bus, params)
        self.hash = FrozenExtractor(model_path(params.model)).hash
        self.head: HeadSnapshot | None = None
        self.written_version = -1
        bus.create_subscription("head", "Head", self.on_head, "latched")
        bus.create_subscription("export_request", "std_msgs/msg/String", self.on_request, "reliable")
        if params.period_s > 0:
            bus.create_timer(params.period_s, lambda: self.export() if self._changed() else None)

    def on_head(self, msg: Any) -> None:
        self.head = from_msg(msg, self.hash)

    def on_request(self, msg: Any) -> None:
        self.export(Path(msg.data) if msg.data else None)

    def _changed(self) -> bool:
        return self.head is not None and self.head.version != self.written_version

    def export(self, out_dir: Path | None = None) -> list[Path]:
        if self.head is None:
            self.log.warning("export requested but no head received yet")
            return []
        folder = out_dir or Path(state_dir(self.params.out_dir, self.bus.namespace, "export"))
        t0 = time.perf_counter()
        onnx_path, c_path = folder / f"{self.params.name}.onnx", folder / f"{self.params.name}.h"
        write_atomic(onnx_path, to_onnx(self.head))
        write_atomic(c_path, to_c_header(self.head, f"tinycl_{self.params.name}").encode())
        self.written_version = self.head.version
        self.log.info("exported head v%d (%d classes) to %s and %s in %.1f ms", self.head.version,
                      self.head.n_classes, onnx_path, c_path.name, 1e3 * (time.perf_counter() - t0))
        return [onnx_path, c_path]

    def run(self) -> None:
        self.bus.spin()

    def close(self) -> None:
        # the last head may still be in flight when the graph stops: give it a moment
        self.bus.spin_once(0.2)
        if self._changed():
            self.export()


def main(argv: list[str] | None = None) -> int:
    return run_node(Exporter, "exporter", argv)


if __name__ == "__main__":
    raise SystemExit(main())
