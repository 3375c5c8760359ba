"""A user's own images: the image-folder dataset (checksums, bad files) and `tinycl experiment
tinyndc --folder` with the protocol's parts as options."""

import hashlib
import json
import logging

import cv2
import numpy as np
import pytest

from tinycl_nodes.cli import main
from tinycl_nodes.datasets import DataError, load_image_folder, load_mnist, read_images

CLASSES = {"zero": 0, "one": 1, "six": 6, "seven": 7}


@pytest.fixture(scope="module")
def folder(tmp_path_factory, data_dir):
    """Digits 0, 1, 6, 7 as a camera might store them: 40x40 colour JPEG and PNG, 40 per class."""
    root = tmp_path_factory.mktemp("data") / "my_digits"
    X, y = load_mnist("test", data_dir)
    for name, digit in CLASSES.items():
        (root / name).mkdir(parents=True)
        for k, i in enumerate(np.flatnonzero(y == digit)[:40]):
            img = cv2.resize(X[i], (40, 40), interpolation=cv2.INTER_LINEAR)
            bgr = np.dstack([img, (img * 0.8).astype(np.uint8), img])
            cv2.imwrite(str(root / name / f"{k:03d}.{'png' if k % 2 else 'jpg'}"), bgr)
    return root


def test_folder_classes_checksums_and_bad_files(folder, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, "tinycl.datasets"):
        ds = load_image_folder(folder)
    assert ds.classes == ("one", "seven", "six", "zero") and len(ds) == 160 and ds.name == "my_digits"
    assert any("has no SHA256SUMS" in r.message for r in caplog.records)     # accepted, said once
    bad = tmp_path / "two_classes"
    for c in ("a", "b"):
        (bad / c).mkdir(parents=True)
        cv2.imwrite(str(bad / c / "ok.png"), np.full((8, 8), 100, np.uint8))
    (bad / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    sums = "".join(f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(bad)}\n"
                   for p in sorted(bad.rglob("*.png")))
    (bad / "SHA256SUMS").write_text(sums)
    ds2 = load_image_folder(bad)
    caplog.clear()
    with caplog.at_level(logging.WARNING, "tinycl.datasets"):
        images, kept = read_images(ds2)
    assert len(images) == 2 and [ds2.files[i].name for i in kept] == ["ok.png", "ok.png"]
    assert [r.message for r in caplog.records if "broken.png" in r.message][0].count("\n") == 0
    cv2.imwrite(str(bad / "b" / "ok.png"), np.full((8, 8), 101, np.uint8))    # changed after the sums
    with pytest.raises(DataError, match="corrupt.*b/ok.png"):
        load_image_folder(bad)
    (tmp_path / "one_class" / "cats").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "one_class" / "cats" / "c.png"), np.zeros((8, 8), np.uint8))
    with pytest.raises(DataError, match=r"has 1 class\(es\) \(cats\): at least 2"):
        load_image_folder(tmp_path / "one_class")


def test_experiment_on_a_folder_names_the_dataset_and_warns(folder, tmp_path, capsys):
    out = tmp_path / "r.json"
    code = main(["experiment", "tinyndc", "--folder", str(folder), "--old-classes", "zero,one", "--labels", "5",
                 "--seeds", "1", "--sweep", "", "--stream-length", "50", "--score-last", "40",
                 "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    r = json.loads(out.read_text())
    assert r["dataset"] == "my_digits" and r["protocol"]["old_classes"] == [0, 3]   # one, zero
    assert r["protocol"]["new_classes"] == [1, 2] and r["protocol"]["stream_length"] == 50
    assert "my_digits" in printed and "MNIST" not in printed.split("warning")[-1].split("\n", 1)[1]
    assert "warning: mnist_0to5_fp32.onnx was made on mnist" in printed
    assert r["methods"]["tinyndc"]["accuracy"]["mean"] > 50, r["methods"]["tinyndc"]
    assert main(["experiment", "tinyndc", "--folder", str(folder), "--old-classes", "eight", "--seeds", "1",
                 "--sweep", "", "--out", str(out)]) == 2
    assert "'eight' is not a class of the dataset" in capsys.readouterr().err
