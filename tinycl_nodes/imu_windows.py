"""Windows of a live IMU stream, as an IMU or vibration model takes them.

A driver publishes one reading at a time (``sensor_msgs/Imu``), at its own rate (100–1,000 Hz on robots, jittery on
phones: the HAR recordings' intervals run from 0 to 80 ms around a mean of 9.8 ms) and sometimes with gaps. A model
was made on windows of ``window`` samples at one ``rate_hz``, overlapping by ``window - step`` (``datasets.har``:
50 samples at 51 Hz, a new window every 25). ``ImuWindower`` resamples the readings onto that rate's uniform grid by
linear interpolation between the two readings around each grid time, and hands out each window as it fills. It does
not interpolate across a gap longer than ``max_gap_s`` or a time that goes back (a driver restarted, a bag played
again): the window being filled is dropped and the grid starts again at the next reading.

Pure numpy, no ROS: the sensor node feeds it (``nodes.sensor``), tests feed it recordings.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .core.errors import InputError


class Window(NamedTuple):
    """One window: ``values`` (channels, window) float32, and the time of its first sample (the readings' clock, ns)."""
    values: np.ndarray
    start_ns: int


class ImuWindower:
    """Readings in, windows out: ``add(t_ns, values)`` returns the windows that reading completed (usually none).

    Times are integer nanoseconds, as a ROS stamp holds them: a time since 1970 in float seconds is only good to
    0.24 µs, which moved interpolated values by up to 1e-3 between readings a millisecond apart. ``restarts`` counts
    the grid's restarts and ``restart_reason`` says why the last one happened (for the node's log line);
    ``duplicates`` counts readings dropped for a time equal to the last one's (phones send such pairs)."""

    def __init__(self, rate_hz: float, window: int, step: int, max_gap_s: float = 0.25) -> None:
        if not (rate_hz > 0 and window >= 2 and 1 <= step <= window and max_gap_s > 0):
            raise ValueError(f"IMU windows: bad rate_hz={rate_hz}, window={window}, step={step}, "
                             f"max_gap_s={max_gap_s} (need rate_hz > 0, window >= 2, 1 <= step <= window)")
        self.rate_hz, self.window, self.step, self.max_gap_s = float(rate_hz), int(window), int(step), float(max_gap_s)
        self.restarts = self.duplicates = 0
        self.restart_reason = ""
        self._origin_ns = 0                         # the grid's first point; point k is k / rate_hz s after it
        self._last_s: float | None = None           # the last reading, in s after the origin
        self._last_v: np.ndarray | None = None
        self._k = 0                                 # the next grid point not yet filled
        self._rows: list[np.ndarray] = []           # the window being filled, one row per grid point
        self._first_k = 0                           # the grid index of _rows[0]

    def add(self, t_ns: int, values: np.ndarray) -> list[Window]:
        """One reading at time ``t_ns`` (the driver's clock), ``values`` (channels,)."""
        v = np.asarray(values, np.float64)
        t = (int(t_ns) - self._origin_ns) * 1e-9
        last = self._last_s
        if last is not None and t == last:
            self.duplicates += 1
            return []
        if last is None or t < last or t - last > self.max_gap_s:
            if last is not None:
                self.restarts += 1
                self.restart_reason = (f"the time went back {last - t:.3f} s" if t < last else
                                       f"a gap of {t - last:.3f} s (over {self.max_gap_s:g} s)")
            self._origin_ns, self._k, self._rows, self._first_k = int(t_ns), 0, [], 0
            self._last_s, self._last_v = 0.0, v
            return self._take(v)
        out: list[Window] = []
        prev_v = self._last_v
        while (grid_t := self._k / self.rate_hz) <= t:
            out += self._take(prev_v + (grid_t - last) / (t - last) * (v - prev_v))
        self._last_s, self._last_v = t, v
        return out

    def _take(self, row: np.ndarray) -> list[Window]:
        """The grid point ``_k`` is ``row``: a window when it completes one."""
        self._rows.append(row)
        self._k += 1
        if len(self._rows) < self.window:
            return []
        done = Window(np.asarray(self._rows, np.float32).T.copy(),
                      self._origin_ns + round(self._first_k * 1e9 / self.rate_hz))
        del self._rows[:self.step]
        self._first_k += self.step
        return [done]


#: an IMU reading beyond this (m/s² or rad/s) is no reading: high-g accelerometers stop near 4,000 m/s² (400 g) and
#: gyroscopes near 40 rad/s; a driver's wrong unit or a corrupt message goes past it
MAX_READING = 10_000.0


def reading_of(msg: Any, now_ns: int) -> tuple[int, np.ndarray]:
    """(time in ns, [ax, ay, az, gx, gy, gz] in m/s² and rad/s) of a ``sensor_msgs/Imu``, the channels of
    ``datasets.har.CHANNELS``; its stamp, or ``now_ns`` for a driver that leaves it 0. InputError for a reading a model
    cannot take: no acceleration or angular velocity (covariance[0] = -1: sensor_msgs' "not provided"), NaN or inf, or
    beyond :data:`MAX_READING`."""
    for part in ("linear_acceleration", "angular_velocity"):
        if float(getattr(msg, f"{part}_covariance")[0]) == -1.0:
            raise InputError(f"the IMU gives no {part.replace('_', ' ')} ({part}_covariance[0] = -1, sensor_msgs/Imu's "
                             f"'not provided'): the model takes acceleration and angular velocity")
    a, g = msg.linear_acceleration, msg.angular_velocity
    values = np.array([a.x, a.y, a.z, g.x, g.y, g.z], np.float64)
    if not np.isfinite(values).all():
        raise InputError("IMU reading with NaN or inf")
    if np.abs(values).max() > MAX_READING:
        raise InputError(f"IMU reading out of range: {np.abs(values).max():.4g} (over {MAX_READING:g}; the model takes "
                         f"m/s² and rad/s)")
    stamp = msg.header.stamp
    t_ns = int(stamp.sec) * 1_000_000_000 + int(stamp.nanosec)
    return (t_ns if t_ns > 0 else int(now_ns)), values
