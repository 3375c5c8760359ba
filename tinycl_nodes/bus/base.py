"""The one small interface every backend implements, plus the parts they share."""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from typing import Any, Callable, Protocol, runtime_checkable

from .log import node_logger
from .qos import QosProfile

Callback = Callable[[Any], None]


@runtime_checkable
class Publisher(Protocol):
    topic: str

    def publish(self, msg: Any) -> None: ...
    def get_subscription_count(self) -> int: ...

    def all_acked(self) -> bool:
        """True once every matched reader is known to hold every sample written (a writer that goes away then loses
        none): a reliable writer's readers acknowledge them; a best-effort writer's never do, so it is False."""
        ...


@runtime_checkable
class Bus(Protocol):
    """What a node sees: publish, subscribe, parameters, clock, timers, spin, a logger."""

    backend: str
    name: str
    namespace: str
    logger: Any
    inputs: InputCounts

    def msg(self, type_name: str) -> type: ...
    def create_publisher(self, topic: str, msg_type: type | str, qos: QosProfile | str = ...) -> Publisher: ...
    def create_subscription(self, topic: str, msg_type: type | str, callback: Callback,
                            qos: QosProfile | str = ...) -> Any: ...
    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Any: ...
    def count_publishers(self, topic: str) -> int: ...
    def topic_name(self, topic: str) -> str: ...
    def declare_parameter(self, name: str, default: Any = None) -> Any: ...
    def declare_node_parameters(self, params: Any, on_set: Callable[[dict[str, Any]], str | None] | None = None) -> None: ...
    def get_parameter(self, name: str) -> Any: ...
    def now_ns(self) -> int: ...
    def stamp(self) -> Any: ...
    def spin(self, timeout_s: float | None = None) -> None: ...
    def spin_once(self, timeout_s: float = 0.0) -> None: ...
    def shutdown(self) -> None: ...


#: the same bad input is said this many times, then once every SAY_AGAIN_S with how many were not said
SAID_AT_ONCE = 20
SAY_AGAIN_S = 60.0
KEPT_REASONS = 256     # the reasons whose repeats are counted (the oldest forgotten: a hostile peer's are endless)


class InputCounts:
    """What a node's subscriptions took: messages handed to its callbacks, and those dropped as bad (a callback that
    raised, a sample that did not decode, or one a node drops itself: ``drop``). Counted where every backend hands a
    message over, so each node need not: the node's health on /diagnostics reads them (``nodes/diagnostics.py``)."""

    def __init__(self) -> None:
        self.received = 0
        self.dropped = 0
        self.last_drop = ""           # why the last one was dropped, one line
        self._lock = threading.Lock()   # a node's own worker thread may drop too (the extractor's frames)
        self._said: dict[str, tuple[int, float, int]] = {}    # why → times said, since when, repeats not said

    def take(self) -> None:
        with self._lock:
            self.received += 1

    def drop(self, why: str) -> str | None:
        """Count one input dropped for ``why``; what to add to its line ("": the line as it is), or None: not to be
        said. The same ``why`` is said :data:`SAID_AT_ONCE` times, then once every :data:`SAY_AGAIN_S` with how many
        were not said. A line for every one was a flood: a labeler on another model than the extractor's said
        "features from extractor …" for each frame, 30 lines a second, 2.6 million a day into the robot's log."""
        with self._lock:
            self.dropped += 1
            self.last_drop = why[:200]
            now = time.monotonic()
            said, since, unsaid = self._said.pop(why, (0, now, 0))
            more: str | None = ""
            if said < SAID_AT_ONCE:
                said += 1
                if said == SAID_AT_ONCE:
                    more = f"; the same again is said once every {SAY_AGAIN_S:.0f} s, with a count"
            elif now - since < SAY_AGAIN_S:
                unsaid, more = unsaid + 1, None
            elif unsaid:
                more = f" ({unsaid} more like it in the last {now - since:.0f} s, not said)"
                since, unsaid = now, 0
            else:                                    # quiet for a minute: said again as if new
                said, since = 1, now
            self._said[why] = (said, since, unsaid)
            while len(self._said) > KEPT_REASONS:
                self._said.pop(next(iter(self._said)))
            return more


def say_dropped(log: logging.Logger, inputs: InputCounts | None, why: str, line: str) -> None:
    """One input dropped: counted in ``inputs`` by ``why``, and ``line`` an error on ``log`` unless the same ``why``
    was said often enough lately (:meth:`InputCounts.drop`). Every backend's undecodable sample and raising callback."""
    more = inputs.drop(why) if inputs is not None else ""
    if more is not None:
        log.error("%s%s", line, more)


def run_guarded(callback: Callable[..., None], args: tuple, where: str, log: logging.Logger,
                inputs: InputCounts | None = None) -> bool:
    """Run a user callback; an exception is one error line naming ``where``, never the end of the
    loop (every backend's subscriptions and timers, and a managed node's held messages), and with ``inputs`` (a
    message's callback) one more dropped. False if it raised."""
    try:
        callback(*args)
    except Exception as exc:  # noqa: BLE001 - a node must survive bad input
        why = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        say_dropped(log, inputs, f"{where}: {why}", f"{where}: dropped: {why}")
        return False
    return True


class Timer:
    """A periodic callback run by the spinning thread (not a thread of its own)."""

    def __init__(self, period_s: float, callback: Callable[[], None]) -> None:
        if period_s <= 0:
            raise ValueError(f"timer period must be > 0, got {period_s}")
        self.period_ns = int(period_s * 1e9)
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class BaseBus:
    """Shared by the dds and local backends: parameters, timers, callback isolation, logger."""

    backend = "base"

    def __init__(self, name: str, namespace: str = "/", parameters: dict[str, Any] | None = None,
                 remaps: list[tuple[str, str]] | None = None, log_level: str = "info") -> None:
        if not name or not name.replace("_", "a").isalnum() or name[0].isdigit():
            raise ValueError(f"invalid node name {name!r}: letters, digits and '_' only, not starting with a digit")
        self.name = name
        self.namespace = "/" + namespace.strip("/")
        self.remaps = list(remaps or [])
        self.logger: logging.Logger = node_logger(name, self.namespace, log_level)
        self._overrides = dict(parameters or {})
        self._params: dict[str, Any] = {}
        self._timers: list[tuple[int, int, Timer]] = []
        self._seq = itertools.count()
        self._shutdown = False
        self._stop = False
        self.inputs = InputCounts()

    # parameters --------------------------------------------------------------------------
    def declare_parameter(self, name: str, default: Any = None) -> Any:
        """Value from the overrides given at construction (e.g. a ROS 2 params YAML), else default."""
        self._params[name] = self._overrides.get(name, default)
        return self._params[name]

    def declare_node_parameters(self, params: Any, on_set: Any = None) -> None:
        """The node's validated parameters, readable with get_parameter (set at run time: ros2 backend only)."""
        self._params.update(params.model_dump())

    def get_parameter(self, name: str) -> Any:
        if name not in self._params:
            raise KeyError(f"parameter {name!r} was not declared")
        return self._params[name]

    # clock ---------------------------------------------------------------------------------
    def now_ns(self) -> int:
        return time.time_ns()

    def stamp(self) -> Any:
        from ..interfaces import ns_to_time
        return ns_to_time(self.now_ns(), self.msg("builtin_interfaces/msg/Time"))

    # timers --------------------------------------------------------------------------------
    def create_timer(self, period_s: float, callback: Callable[[], None]) -> Timer:
        timer = Timer(period_s, callback)
        heapq.heappush(self._timers, (time.monotonic_ns() + timer.period_ns, next(self._seq), timer))
        return timer

    def destroy(self, entity: Any) -> None:
        """Remove a timer (a backend also removes its subscriptions): a one-off wait, a managed node's cleanup."""
        if isinstance(entity, Timer):
            entity.cancel()

    def _next_timer_in_s(self) -> float | None:
        while self._timers and self._timers[0][2].cancelled:
            heapq.heappop(self._timers)
        if not self._timers:
            return None
        return max(0.0, (self._timers[0][0] - time.monotonic_ns()) / 1e9)

    def _run_due_timers(self) -> None:
        now = time.monotonic_ns()
        while self._timers and self._timers[0][0] <= now:
            due, _, timer = heapq.heappop(self._timers)
            if timer.cancelled:
                continue
            heapq.heappush(self._timers, (max(due + timer.period_ns, now), next(self._seq), timer))
            self._safe(timer.callback, None, "timer")

    # callbacks -------------------------------------------------------------------------------
    def _safe(self, callback: Callable, msg: Any, where: str) -> None:
        if where == "timer":
            run_guarded(callback, (), where, self.logger)
            return
        self.inputs.take()
        run_guarded(callback, (msg,), where, self.logger, self.inputs)

    def request_stop(self) -> None:
        """Make spin() return soon; safe from a signal handler. The bus stays usable (close() may
        still publish a last head or save state) until shutdown()."""
        self._stop = True
        wake = getattr(self, "wake", None)
        if wake is not None:
            wake()

    def ok(self) -> bool:
        """False once a stop was requested or the bus was shut down (for nodes' own loops)."""
        return not (self._stop or self._shutdown)

    def spin(self, timeout_s: float | None = None) -> None:
        """Run callbacks until request_stop()/shutdown() (or for timeout_s seconds)."""
        end = None if timeout_s is None else time.monotonic() + timeout_s
        while self.ok() and (end is None or time.monotonic() < end):
            step = 0.1 if end is None else max(0.0, min(0.1, end - time.monotonic()))
            self.spin_once(step)

    def spin_once(self, timeout_s: float = 0.0) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def msg(self, type_name: str) -> type:
        from ..interfaces import get_type
        return get_type(type_name, getattr(self, "distro", "jazzy"))

    def _resolve_type(self, msg_type: type | str) -> type:
        return self.msg(msg_type) if isinstance(msg_type, str) else msg_type

    def topic_name(self, topic: str) -> str:
        """The fully qualified topic after the namespace and the ``-r from:=to`` remap rules."""
        from ..interfaces import remap_topic
        return remap_topic(topic, self.namespace, self.remaps)

    def __enter__(self) -> "BaseBus":
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
