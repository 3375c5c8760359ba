"""A live IMU's readings as the model's windows (``imu_windows``): resampled onto the model's rate, cut with its
overlap, never across a gap; and on real recordings (HAR phones, with their jittery stamps) classified as well as the
dataset's own windows."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from tinycl_nodes.core.errors import InputError
from tinycl_nodes.datasets.har import CLASSES, RATE_HZ, STEP, WINDOW, har_folder, load_har
from tinycl_nodes.extractor import FrozenExtractor, model_path
from tinycl_nodes.imu_windows import ImuWindower, reading_of


def _feed(w: ImuWindower, t: np.ndarray, v: np.ndarray) -> list:
    """``t`` in s: fed as ns, as a stamp holds them."""
    return [win for i in range(t.size) for win in w.add(round(float(t[i]) * 1e9), v[i])]


def test_readings_at_another_rate_with_jitter_are_resampled_onto_the_grid():
    rng = np.random.default_rng(0)
    t = 100.0 + np.cumsum(rng.uniform(0.002, 0.008, 4000))           # ~200 Hz, jittery
    signal = lambda t: np.stack([np.sin(2 * np.pi * 1.3 * t), np.cos(2 * np.pi * 0.7 * t)], -1)  # noqa: E731
    wins = _feed(ImuWindower(50.0, 40, 10), t, signal(t))
    n_grid = int((t[-1] - t[0]) * 50.0) + 1
    assert len(wins) == (n_grid - 40) // 10 + 1
    for k, win in enumerate(wins):
        assert win.values.shape == (2, 40) and win.values.dtype == np.float32
        assert win.start_ns * 1e-9 == pytest.approx(t[0] + k * 10 / 50.0)
        grid = win.start_ns * 1e-9 + np.arange(40) / 50.0
        assert np.abs(win.values - signal(grid).T).max() < 2e-3       # linear interpolation of a smooth signal
    assert np.array_equal(wins[0].values[:, 10:], wins[1].values[:, :30])   # overlap: window - step samples


def test_a_gap_or_a_time_going_back_starts_the_grid_again_and_duplicates_are_dropped():
    w = ImuWindower(10.0, 5, 5, max_gap_s=0.25)
    t = np.arange(0, 0.75, 0.05)                                      # 15 readings: one window of 0.0–0.4 s
    assert len(_feed(w, t, np.ones((t.size, 1)))) == 1 and w.restarts == 0
    assert w.add(round(t[-1] * 1e9), np.ones(1)) == [] and w.duplicates == 1   # the same stamp again
    assert w.add(1_200_000_000, np.ones(1)) == [] and w.restarts == 1 and "gap of 0.500 s" in w.restart_reason
    later = _feed(w, 1.2 + np.arange(1, 10) * 0.05, np.full((9, 1), 2.0))
    assert [x.start_ns for x in later] == [1_200_000_000]          # the window filled before the gap is gone
    assert later[0].values.tolist() == [[1, 2, 2, 2, 2]]              # from the reading after the gap on
    assert w.add(500_000_000, np.ones(1)) == [] and w.restarts == 2 and "went back" in w.restart_reason


@pytest.mark.parametrize("bad", [dict(rate_hz=0), dict(window=1), dict(step=0), dict(step=6), dict(max_gap_s=0)])
def test_bad_settings_are_refused(bad):
    with pytest.raises(ValueError, match="IMU windows: bad"):
        ImuWindower(**{"rate_hz": 50.0, "window": 5, "step": 2, **bad})


def _imu_msg(acc=(0.1, 0.2, 9.8), gyro=(0.01, 0.02, 0.03), sec=5, nanosec=500_000_000, no_gyro=False):
    v3 = lambda x: SimpleNamespace(x=x[0], y=x[1], z=x[2])  # noqa: E731
    return SimpleNamespace(header=SimpleNamespace(stamp=SimpleNamespace(sec=sec, nanosec=nanosec)),
                           linear_acceleration=v3(acc), angular_velocity=v3(gyro),
                           linear_acceleration_covariance=[0.0] * 9,
                           angular_velocity_covariance=[-1.0 if no_gyro else 0.0] + [0.0] * 8)


def test_a_reading_is_taken_from_sensor_msgs_imu_or_refused_in_one_line():
    t, v = reading_of(_imu_msg(), now_ns=99)
    assert t == 5_500_000_000 and v.tolist() == pytest.approx([0.1, 0.2, 9.8, 0.01, 0.02, 0.03])
    assert reading_of(_imu_msg(sec=0, nanosec=0), now_ns=99)[0] == 99     # a driver that stamps nothing
    for msg, said in [(_imu_msg(no_gyro=True), "no angular velocity"), (_imu_msg(acc=(np.nan, 0, 0)), "NaN"),
                      (_imu_msg(gyro=(0, 0, 1e5)), "out of range")]:
        with pytest.raises(InputError, match=said) as err:
            reading_of(msg, now_ns=0)
        assert "\n" not in str(err.value)


def _recording_windows(data_dir: str, subject: int) -> tuple[np.ndarray, np.ndarray]:
    """The phone's recordings of ``subject`` fed reading by reading, at their own stamps, as a driver would send them;
    each window labelled as the dataset labels its own (its activity on at least 80% of it)."""
    X, y = [], []
    for path in sorted((har_folder(data_dir) / "DATA" / f"s{subject:02d}").glob("*_sp.csv")):
        rows = [line.split(",") for line in path.read_text().splitlines()[1:] if line]
        values = np.array([r[:6] for r in rows], np.float64)
        t = np.array([float(r[6]) for r in rows]) / 1000.0
        labels = np.array([CLASSES.index(r[7].strip()) for r in rows])
        for win in _feed(ImuWindower(RATE_HZ, WINDOW, STEP), t, values):
            start = win.start_ns * 1e-9
            counts = np.bincount(labels[(t >= start - 1e-6) & (t < start + WINDOW / RATE_HZ)], minlength=5)
            if counts.max() >= 0.8 * counts.sum():
                X.append(win.values)
                y.append(counts.argmax())
    return np.asarray(X), np.asarray(y)


def test_a_phones_live_readings_are_classified_as_well_as_the_datasets_windows(data_dir):
    """The shipped HAR model with a nearest-class-mean head on users 1–12; new users 13–16 as the dataset windows
    them (every other sample) and as the windower does from the readings and their stamps (0 to 80 ms apart)."""
    extractor = FrozenExtractor(model_path("har_elm"))
    base = load_har(data_dir, subjects=list(range(1, 13)))
    feats = extractor.extract(base.X)
    means = np.stack([feats[base.y == c].mean(0) for c in range(len(CLASSES))])

    def accuracy(X: np.ndarray, y: np.ndarray) -> float:
        f = extractor.extract(X)
        return float((((f[:, None] - means[None]) ** 2).sum(-1).argmin(1) == y).mean() * 100)
    ds = load_har(data_dir, subjects=[13, 14, 15, 16])
    live = [_recording_windows(data_dir, s) for s in (13, 14, 15, 16)]
    X, y = np.concatenate([x for x, _ in live]), np.concatenate([y for _, y in live])
    assert abs(len(y) - len(ds)) <= 0.05 * len(ds), (len(y), len(ds))
    got, want = accuracy(X, y), accuracy(ds.X, ds.y)
    print(f"live windows {len(y)}: {got:.2f} %, the dataset's {len(ds)}: {want:.2f} %")
    assert got >= want - 3.0, (got, want)
