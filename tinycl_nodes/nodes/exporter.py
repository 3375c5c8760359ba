"""exporter node: writes the learned head as ONNX and as a C header, on request and on a period.

Request: a ``std_msgs/String`` on ``export_request``: empty = the configured folder, else a
sub-folder of it (relative, no ``..``): a peer never chooses where files go outside ``out_dir``.
A head trained on another frozen extractor, or whose kind is not a plain name, is refused with
one line (nothing a peer sends is written into the C header unescaped); the files are written
atomically.

A ``LatentUpperHead`` (the learner's ``latent_head``) is not a linear head: it is rebuilt from the
state blob its ``Head`` carries (``presets.latent_upper`` on this node's model, then its state:
refused with one line if it does not fit) and ``<name>.onnx`` is its upper layers + classifier
(``export/latent_onnx.upper_to_onnx``: input ``latent``, the activations at the cut, output
``scores``); no C header (the C core's form is ``export/c_latent.py``).
"""

from __future__ import annotations

import re
import time
from types import SimpleNamespace
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from .. import presets
from ..export.head_export import to_c_header, to_onnx
from ..export.latent_onnx import upper_to_onnx
from ..core.federated import HeadSnapshot
from ..core.latent import LatentUpperHead
from ..extractor import extractor_hash, model_path
from ..interfaces.heads import from_msg
from ..storage import RepeatedFailure, one_line, write_atomic
from ..core.errors import ExtractorMismatchError, InputError, StateError
from ..core import state as st
from .diagnostics import WARN, Status
from .runner import Node, StateParams, run_node, state_dir


SUB_FOLDER = re.compile(r"[A-Za-z0-9_.][A-Za-z0-9_.\-/]*")
#: at its stop, how long the exporter waits for a head whose writer is still up (within launch's 5 s to SIGTERM)
LAST_HEAD_WAIT_S = 3.0


class ExporterParams(StateParams):
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
        import onnx  # noqa: F401 - at the start: the first export took 0.7 s more, importing it while heads queued
        # the hash only: the model is not run here (an onnxruntime session cost this node 20 MB and more)
        self.hash = extractor_hash(model_path(params.model))
        self.head: HeadSnapshot | None = None
        self.written_version = -1
        self.latent: LatentUpperHead | None = None     # a latent_head's upper layers + classifier
        # the last head received and the version written: an export request after a restart works
        # before the learner publishes again, and an unchanged head is not written twice
        self.state = self.open_state("exporter", self.state_dicts)
        self.state.load(self._restore)
        bus.create_subscription("head", "Head", self.on_head, "latched")
        bus.create_subscription("export_request", "std_msgs/msg/String", self.on_request, "reliable")
        self._failures = RepeatedFailure("export the head", self.log)   # a full disk fails every period
        if params.period_s > 0:
            bus.create_timer(params.period_s, self._export_changed)

    def on_head(self, msg: Any) -> None:
        head = from_msg(msg, self.hash)
        latent = None
        if head.kind == LatentUpperHead.kind:
            if not len(msg.state):
                raise InputError(f"head v{msg.version} is a {head.kind} without its state (the learner's with_state): "
                                 "its upper layers are in the state")
            latent = self._latent_head(st.from_bytes(bytes(bytearray(msg.state))))
        self.head, self.latent = head, latent
        self.state.changed()

    def _latent_head(self, state: dict[str, Any]) -> LatentUpperHead:
        head = presets.latent_upper(self.params.model, extractor_hash=self.hash)
        head.load_state_dict(state)     # StateError (one line) if another cut, model or kind
        return head

    def state_dicts(self) -> dict[str, dict[str, Any]] | None:
        h = self.head
        if h is None:
            return None
        W, b = h.linear()      # what is exported: the scoring rows
        return {"head": st.make_state("LinearHead", 1, {}, {
            "classes": h.class_ids, "counts": h.counts, "weights": W, "bias": b},
            {"names": list(h.class_names), "kind": h.kind, "extractor_hash": h.extractor_hash,
             "version": h.version, "n_seen": h.n_seen, "written_version": self.written_version})} | \
            ({"latent": self.latent.state_dict()} if self.latent is not None else {})

    def _restore(self, saved: dict[str, dict[str, Any]]) -> None:
        s = st.check_state(saved.get("head"), "LinearHead", 1, ("classes", "counts", "weights", "bias"))
        m, a = s["meta"], s["arrays"]
        n, d = len(a["classes"]), int(np.asarray(a["weights"]).shape[-1])
        msg = SimpleNamespace(classes=[SimpleNamespace(id=int(c), name=str(nm), sample_count=int(k)) for c, nm, k in
                                       zip(a["classes"], m["names"], a["counts"], strict=True)],
                              n_features=d, weights=np.asarray(a["weights"], np.float32).ravel(),
                              bias=st.expect_shape(s, "bias", (n,)), kind=str(m["kind"]),
                              extractor_hash=str(m["extractor_hash"]), version=int(m["version"]),
                              n_seen=int(m["n_seen"]), state=b"")
        try:
            self.head = from_msg(msg, self.hash)            # the same checks as a received head
        except ExtractorMismatchError as exc:   # the learner's head, copied: another model's is moved aside, and the
            raise StateError(str(exc)) from None  # learner (whose state it is) stops on it (storage.StateStore.load)
        if self.head.kind == LatentUpperHead.kind:
            if "latent" not in saved:
                raise StateError(f"a {LatentUpperHead.kind} without its latent state")
            self.latent = self._latent_head(saved["latent"])
        self.written_version = int(m.get("written_version", -1))
        self.log.info("restored head v%d (%d classes) from %s", self.head.version, n, self.state.path)

    def _export_changed(self) -> None:
        """The periodic export of a changed head (a request's or the last one's failure is said each time)."""
        if not self._changed():
            return
        try:
            self.export()
        except OSError as exc:
            self._failures.failed(one_line(exc))
            return
        self._failures.landed()

    def on_request(self, msg: Any) -> None:
        self.export(self.request_folder(str(msg.data)))

    def request_folder(self, sub: str) -> Path:
        """The folder a request names: ``out_dir`` itself, or a sub-folder of it (else InputError)."""
        root = Path(state_dir(self.params.out_dir, self.bus.namespace, "export"))
        if not sub:
            return root
        rel = Path(sub)
        if (len(sub) > 255 or rel.is_absolute() or ".." in rel.parts or not SUB_FOLDER.fullmatch(sub)):
            raise InputError(f"export request {sub[:60]!r}: must be empty or a sub-folder of the export folder "
                             "(letters, digits, _ - . /; no '..', not absolute): refused")
        return root / rel

    def _changed(self) -> bool:
        """A head not written yet, or whose files are gone from the export folder (deleted, or a
        new ``out_dir`` over the same state)."""
        if self.head is None:
            return False
        folder = Path(state_dir(self.params.out_dir, self.bus.namespace, "export"))
        return self.head.version != self.written_version or not (folder / f"{self.params.name}.onnx").is_file()

    def export(self, out_dir: Path | None = None) -> list[Path]:
        """Write ``<name>.onnx`` and ``<name>.h`` of the last head to ``out_dir`` (default: the export folder); a latent
        head writes ``<name>.onnx`` only, and removes the ``<name>.h`` an earlier head left there."""
        if self.head is None:
            self.log.warning("export requested but no head received yet")
            return []
        folder = out_dir or Path(state_dir(self.params.out_dir, self.bus.namespace, "export"))
        t0 = time.perf_counter()
        onnx_path, c_path = folder / f"{self.params.name}.onnx", folder / f"{self.params.name}.h"
        if self.latent is not None:
            write_atomic(onnx_path, upper_to_onnx(self.latent).SerializeToString())
            if c_path.is_file():   # an earlier head's C form beside this head's ONNX would pass for this head's
                c_path.unlink()
                self.log.info("removed %s: the C form of an earlier head (a latent head has no C header here; "
                              "its C form comes from export/c_latent.py)", c_path)
            self.written_version = self.head.version
            self.state.changed()
            self.log.info("exported latent head v%d (%d classes, upper layers + classifier) to %s",
                          self.head.version, self.head.n_classes, onnx_path)
            return [onnx_path]
        write_atomic(onnx_path, to_onnx(self.head))
        write_atomic(c_path, to_c_header(self.head, f"tinycl_{self.params.name}").encode())
        self.written_version = self.head.version
        self.state.changed()
        self.log.info("exported head v%d (%d classes) to %s and %s in %.1f ms", self.head.version,
                      self.head.n_classes, onnx_path, c_path.name, 1e3 * (time.perf_counter() - t0))
        return [onnx_path, c_path]

    def run(self) -> None:
        self.bus.spin()

    def status(self) -> Status:
        """The head version held and the one last exported; WARN while exports fail (a full disk)."""
        st = Status(values={"head_version": str(self.head.version) if self.head is not None else "none yet",
                            "exported_version": str(self.written_version) if self.written_version >= 0 else "none"})
        if self._failures.error:
            st.add(WARN, f"cannot export the head: {self._failures.error}")
        return st

    def close(self) -> None:
        # The learner publishes its final head as it stops. `tinycl launch` stops the exporter after it; `ros2 launch`
        # signals every node at once, so wait while a writer of `head` is still there (at most LAST_HEAD_WAIT_S: a
        # writer that died without saying so is only seen when its lease ends) and export what came.
        deadline = time.monotonic() + LAST_HEAD_WAIT_S
        self.bus.spin_once(0.2)
        while self.bus.count_publishers("head") and time.monotonic() < deadline:
            self.bus.spin_once(0.1)
        try:
            if self._changed():
                self.export()
        finally:                      # an export that fails (a full disk) still leaves the head in the state
            self.state.save()


def main(argv: list[str] | None = None) -> int:
    return run_node(Exporter, "exporter", argv)


if __name__ == "__main__":
    raise SystemExit(main())
