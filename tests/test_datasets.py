import gzip
import shutil

import numpy as np
import pytest

from tinycl_nodes.datasets import DataError, load_mnist


def test_mnist_shapes_and_counts(data_dir):
    X, y = load_mnist("train", data_dir)
    assert X.shape == (60000, 28, 28) and X.dtype == np.uint8
    assert np.bincount(y).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    Xt, yt = load_mnist("test", data_dir)
    assert Xt.shape == (10000, 28, 28) and yt.shape == (10000,)
    assert int(np.bincount(y[y <= 5]).sum()) == 36017  # the frozen model's training set


def test_missing_folder_names_the_path(tmp_path):
    with pytest.raises(DataError, match=str(tmp_path / "nope")):
        load_mnist("train", tmp_path / "nope")


def test_missing_file_named(tmp_path, data_dir):
    (tmp_path / "mnist").mkdir()
    shutil.copy(data_dir / "mnist" / "SHA256SUMS", tmp_path / "mnist")
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        load_mnist("test", tmp_path)


def test_corrupt_file_detected_by_checksum(tmp_path, data_dir):
    d = tmp_path / "mnist"
    d.mkdir()
    for f in ("SHA256SUMS", "t10k-labels-idx1-ubyte.gz"):
        shutil.copy(data_dir / "mnist" / f, d)
    raw = gzip.open(data_dir / "mnist" / "t10k-images-idx3-ubyte.gz").read()
    with gzip.open(d / "t10k-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(raw[:-1] + b"\x01")
    with pytest.raises(DataError, match="corrupt"):
        load_mnist("test", tmp_path)


def test_bad_split():
    with pytest.raises(DataError, match="split"):
        load_mnist("validation")


def test_env_var_is_used(monkeypatch, tmp_path):
    monkeypatch.setenv("TINYCL_DATA", str(tmp_path / "elsewhere"))
    with pytest.raises(DataError, match="elsewhere"):
        load_mnist("train")


@pytest.mark.parametrize("content", [b"", b"\x00\x00"])
def test_a_users_mnist_file_shorter_than_its_header_is_one_line(tmp_path, data_dir, content):
    """A folder of one's own (no SHA256SUMS) with an empty or 2-byte gzip: numpy's 'buffer is smaller than requested
    size' in a traceback, in the sensor node and in `experiment tinyndc --data`."""
    d = tmp_path / "mnist"
    d.mkdir()
    shutil.copy(data_dir / "mnist" / "t10k-labels-idx1-ubyte.gz", d)
    with gzip.open(d / "t10k-images-idx3-ubyte.gz", "wb") as fh:
        fh.write(content)
    with pytest.raises(DataError, match=f"t10k-images-idx3-ubyte.gz: not an idx3 file \\({len(content)} bytes"):
        load_mnist("test", tmp_path)
