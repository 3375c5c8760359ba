"""HAR and CWRU loaders on the real data; missing or corrupt data → DataError naming the path."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tinycl_nodes.datasets import DataError, load_cwru, load_har
from tinycl_nodes.datasets import cwru as cwru_mod
from tinycl_nodes.datasets.har import CLASSES as HAR_CLASSES, har_subjects
from tinycl_nodes.extractor import FrozenExtractor, model_path


def test_har_windows_shapes_labels_and_subjects(data_dir):
    assert har_subjects(data_dir)[:3] == [1, 2, 3] and len(har_subjects(data_dir)) >= 16
    h = load_har(data_dir, device="sp", subjects=[1, 2])
    assert h.X.shape[1:] == (6, 50) and h.X.dtype == np.float32 and len(h) == h.X.shape[0] > 100
    assert set(np.unique(h.subject)) == {1, 2}
    assert set(np.unique(h.y)) == set(range(len(HAR_CLASSES)))          # all five activities
    # raw units: gravity shows on the accelerometer, not on the gyroscope
    acc = np.linalg.norm(h.X[:, :3].mean(2), axis=1)
    assert 7.0 < float(np.median(acc)) < 12.0
    w = load_har(data_dir, device="sw", subjects=[1], window=100, step=50, decimate=1)
    assert w.X.shape[1:] == (6, 100) and w.device == "sw"
    one = w.select(w.execution == w.execution[0])
    assert (one.execution == w.execution[0]).all()


def test_har_missing_folder_and_subject_named(tmp_path, data_dir):
    with pytest.raises(DataError, match=str(tmp_path / "nope")):
        load_har(tmp_path / "nope")
    with pytest.raises(DataError, match="99"):
        load_har(data_dir, subjects=[99])
    with pytest.raises(DataError, match="device"):
        load_har(data_dir, device="tablet")


def test_har_corrupt_file_caught_by_checksum(tmp_path, data_dir):
    src = data_dir / "har_sp_sw"
    dst = tmp_path / "har_sp_sw" / "DATA" / "s01"
    dst.mkdir(parents=True)
    shutil.copy(src / "SHA256SUMS", tmp_path / "har_sp_sw")
    for f in (src / "DATA" / "s01").glob("*_sp.csv"):
        shutil.copy(f, dst)
    victim = sorted(dst.glob("*_sp.csv"))[0]
    victim.write_text(victim.read_text().replace("WALKING", "TURNING", 1))
    with pytest.raises(DataError, match="corrupt"):
        load_har(tmp_path, subjects=[1], verify=True)
    h = load_har(tmp_path, subjects=[1], verify=False)   # unchecked, it still parses
    assert len(h) > 0


def test_cwru_windows_split_and_classes(data_dir):
    tr = load_cwru(data_dir, split="train")
    te = load_cwru(data_dir, split="test")
    assert tr.X.shape[1:] == (1, 1024) and tr.X.dtype == np.float32
    assert np.bincount(tr.y).size == 10 and np.bincount(te.y).min() > 40
    sig = cwru_mod.load_cwru_signals(data_dir)
    for c, name in enumerate(cwru_mod.CLASSES):      # train windows end before test windows start
        cut = int(sig[name].size * 0.7)
        assert tr.start[tr.y == c].max() + 1024 <= cut <= te.start[te.y == c].min()
    short = load_cwru(data_dir, split="all", window=200, step=200)
    assert short.X.shape[1:] == (1, 200) and len(short) > len(tr)


def test_cwru_missing_data_named(tmp_path, data_dir):
    with pytest.raises(DataError, match=str(tmp_path)):
        load_cwru(tmp_path)
    d = tmp_path / "cwru_12k_de" / "0hp_10class"
    d.mkdir(parents=True)
    shutil.copy(data_dir / "cwru_12k_de" / "SHA256SUMS.all", tmp_path / "cwru_12k_de")
    shutil.copy(data_dir / "cwru_12k_de" / "0hp_10class" / "normal_0_97.mat", d)
    with pytest.raises(DataError, match="12k_Drive_End_B007_0_118.mat"):
        load_cwru(tmp_path)
    (tmp_path / "cwru_12k_de" / "SHA256SUMS.all").write_bytes(bytes(range(256)))    # was a UnicodeDecodeError
    with pytest.raises(DataError, match="SHA256SUMS.all cannot be read"):
        load_cwru(tmp_path)
    with pytest.raises(DataError, match="split"):
        load_cwru(data_dir, split="valid")


@pytest.mark.parametrize("name,shape", [("har_elm", (6, 50)), ("cwru_elm", (1, 1024))])
def test_elm_models_run_in_the_frozen_extractor(name, shape, data_dir):
    ex = FrozenExtractor(model_path(name))
    assert ex.input_shape == shape and ex.n_features == 64
    X = (load_har(data_dir, subjects=[3]).X if name == "har_elm" else load_cwru(data_dir, split="test").X)[:40]
    F = ex.extract(X)
    assert F.shape == (40, 64) and np.isfinite(F).all()
    np.testing.assert_allclose(ex.extract_one(X[5]), F[5], rtol=1e-4, atol=1e-4)
    assert 0.2 < float(F.std()) < 5.0          # standardised inside the graph
