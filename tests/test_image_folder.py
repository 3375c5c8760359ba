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
    cv2.imwrite(str(bad / "b" / "new.png"), np.full((8, 8), 99, np.uint8))    # added after the sums: said
    caplog.clear()
    with caplog.at_level(logging.WARNING, "tinycl.datasets"):
        assert len(load_image_folder(bad)) == 4
    assert [r.message for r in caplog.records if "not in its SHA256SUMS" in r.message][0].startswith(
        "note: 1 image(s) of")
    cv2.imwrite(str(bad / "b" / "ok.png"), np.full((8, 8), 101, np.uint8))    # changed after the sums
    with pytest.raises(DataError, match="corrupt.*b/ok.png"):
        load_image_folder(bad)
    (bad / "SHA256SUMS").write_text(sums + "garbage line\n")                  # read as 'line' missing, before
    with pytest.raises(DataError, match="SHA256SUMS: line 4 is not '<sha256>  <file>'"):
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
    assert r["methods"]["tinycl"]["accuracy"]["mean"] > 50, r["methods"]["tinycl"]
    assert main(["experiment", "tinyndc", "--folder", str(folder), "--old-classes", "eight", "--seeds", "1",
                 "--sweep", "", "--out", str(out)]) == 2
    assert "'eight' is not a class of the dataset" in capsys.readouterr().err


@pytest.mark.parametrize("args, problem", [
    # numpy's "Cannot take a larger sample than population" traceback: 40 images a class, 20 in the training part
    (["--labels", "30"], "--labels 30: class 'one' has 20 image(s) in the training part to draw 30 labelled samples "
                         "from: give at most 20"),
    (["--sweep", "1,25"], "--sweep 25: class 'one' has 20 image(s)"),
    (["--old-classes", "zero,one,six,seven"], "--old-classes: one, seven, six, zero are all the classes of the "
                                               "dataset, so no new class is left to learn"),
])
def test_a_folder_experiment_it_cannot_run_is_one_line(folder, tmp_path, capsys, args, problem):
    out = tmp_path / "r.json"
    assert main(["experiment", "tinyndc", "--folder", str(folder), "--old-classes", "zero,one", "--labels", "5",
                 "--seeds", "1", "--sweep", "", "--stream-length", "50", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert problem in err[-1] and "Traceback" not in "\n".join(err), err
    assert not out.exists()


def test_a_stream_longer_than_the_folder_is_said_and_leaves_images_held_out(folder, tmp_path, capsys):
    """The default 8,000 was cut to the folder's 80 test images without a word: none was held out, so forgetting was
    NaN, written as a bare NaN (not JSON), under the title "scores on the last 1000 of 80"."""
    out = tmp_path / "r.json"
    assert main(["experiment", "tinyndc", "--folder", str(folder), "--old-classes", "zero,one", "--labels", "5",
                 "--seeds", "1", "--sweep", "", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    note = [line for line in printed.splitlines() if line.startswith("note: my_digits")]
    assert note == ["note: my_digits has 80 images to stream from: the stream is 64 of them, not 8000, and 16 are held "
                    "out to measure forgetting; scores on all 64 predictions of the stream (--score-last 1000)"], \
        printed
    assert "scores on the last 64 of 64" in printed
    r = json.loads(out.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in the results JSON"))
    assert r["protocol"]["stream_length"] == 64 and r["protocol"]["score_last"] == 64
    assert all(isinstance(m["forgetting_old"]["mean"], float) for m in r["methods"].values()), r["methods"]


def test_experiment_on_a_rosbag_of_labelled_camera_images(data_dir, tmp_path, capsys):
    """A bag as `ros2 bag record` of a labelled session writes it: JPEG CompressedImage frames and
    tinycl_nodes/GroundTruth with the same stamps (one frame without a label, one corrupt)."""
    from rosbags.rosbag2 import StoragePlugin, Writer

    from tinycl_nodes.interfaces.typestore import typestore

    store = typestore("humble")
    C, G, Header, Time = (store.types[n] for n in ("sensor_msgs/msg/CompressedImage", "tinycl_nodes/msg/GroundTruth",
                                                   "std_msgs/msg/Header", "builtin_interfaces/msg/Time"))
    X, y = load_mnist("test", data_dir)
    picks = [i for d in CLASSES.values() for i in np.flatnonzero(y == d)[:25]]
    bag = tmp_path / "labelled_session"
    with Writer(bag, version=9, storage_plugin=StoragePlugin.MCAP) as writer:
        img_c = writer.add_connection("/cam/image_raw/compressed", C.__msgtype__, typestore=store)
        gt_c = writer.add_connection("/cam/ground_truth", G.__msgtype__, typestore=store)
        for k, i in enumerate(picks + [picks[0], picks[1]]):
            h = Header(stamp=Time(sec=10 + k, nanosec=0), frame_id="cam")
            ok, enc = cv2.imencode(".jpg", cv2.resize(X[i], (64, 64)))
            data = enc.ravel() if k != len(picks) + 1 else enc.ravel()[:100]        # the last one corrupt
            writer.write(img_c, k, store.serialize_cdr(C(header=h, format="jpeg", data=data), C.__msgtype__))
            if k < len(picks):                                                      # one without a label
                name = [n for n, d in CLASSES.items() if d == y[i]][0]
                writer.write(gt_c, k, store.serialize_cdr(G(header=h, label=int(y[i]), class_name=name,
                                                            learnable=True), G.__msgtype__))
    out = tmp_path / "bag.json"
    assert main(["experiment", "tinyndc", "--bag", str(bag), "--bag-topic", "/cam/image_raw/compressed",
                 "--truth-topic", "/cam/ground_truth", "--old-classes", "zero,one", "--labels", "3", "--seeds", "1",
                 "--sweep", "", "--stream-length", "40", "--score-last", "30", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["dataset"] == "labelled_session" and r["class_names"] == ["zero", "one", "six", "seven"]
    assert r["protocol"]["old_classes"] == [0, 1] and r["protocol"]["stream_length"] == 40
    assert r["methods"]["tinyndc"]["accuracy"]["mean"] > 50
    assert r["methods"]["tinycl"]["accuracy"]["mean"] > 50
    assert "labelled_session" in capsys.readouterr().out
    assert main(["experiment", "tinyndc", "--bag", str(bag), "--truth-topic", "/nope", "--seeds", "1",
                 "--sweep", "", "--out", str(out)]) == 2
    assert "no sensor_msgs/msg/Image or sensor_msgs/msg/CompressedImage topic /camera/image_raw" in \
        capsys.readouterr().err


def test_a_folder_is_a_dataset_for_the_training_split_protocol(data_dir, tmp_path, capsys, monkeypatch):
    """`--dataset <folder>` (the experiment, `tinycl design`, a folder model's `tinycl model classes`) crashed with
    "cannot unpack non-iterable ImageFolder", and the card of a model trained on a folder kept only the folder's
    name, so from another directory its images were not found. Images in sub-folders of a class count too."""
    from tinycl_nodes.experiments.protocol import LABEL_POOL, STREAM_POOL, load_images
    from tinycl_nodes.training.train_frozen import main as train_main

    X, y = load_mnist("train", data_dir)
    per_class = LABEL_POOL + 2 * STREAM_POOL + 200
    root = tmp_path / "digits"
    for name, digit in (("nought", 0), ("one", 1), ("two", 2)):
        for k, i in enumerate(np.flatnonzero(y == digit)[:per_class]):
            sub = root / name / ("old" if k % 3 else "") / ("2025" if k % 5 == 0 else "")
            sub.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(sub / f"{k:04d}.png"), X[i])
    Xf, yf = load_images(str(root), "train")
    assert Xf.shape == (3 * per_class, 28, 28) and Xf.dtype == np.uint8 and np.bincount(yf).tolist() == [per_class] * 3
    assert np.array_equal(np.sort(Xf[yf == 1].reshape(per_class, -1), axis=0),
                          np.sort(X[np.flatnonzero(y == 1)[:per_class]].reshape(per_class, -1), axis=0))
    with pytest.raises(Exception, match="an image folder has no test split"):
        load_images(str(root), "test")

    models = tmp_path / "models"
    assert train_main(["--dataset", str(root), "--classes", "nought,one", "--split", "train", "--epochs", "1",
                       "--name", "digits_net", "--out", str(models)]) == 0
    card = json.loads((models / "digits_net.json").read_text())
    assert card["dataset"] == str(root.resolve()) and card["images"] == 2 * 200
    monkeypatch.chdir(tmp_path / "models")                 # elsewhere: the card still finds the images
    (models / "digits_net_fp32.classes").unlink()
    assert main(["model", "classes", str(models / "digits_net_fp32.onnx")]) == 0
    assert "400 training images of classes [0, 1]" in " ".join(capsys.readouterr().out.split())
    out = tmp_path / "r.json"
    assert main(["experiment", "tinyndc", "--dataset", str(root), "--split", "train", "--model",
                 str(models / "digits_net_fp32.onnx"), "--labels", "5", "--seeds", "1", "--sweep", "",
                 "--stream-length", "300", "--score-last", "200", "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["dataset"] == "digits" and r["class_names"] == ["nought", "one", "two"]
    assert r["protocol"]["old_classes"] == [0, 1] and r["protocol"]["new_classes"] == [2]
    assert r["methods"]["tinycl"]["accuracy"]["mean"] > 80, r["methods"]["tinycl"]


def test_a_model_trained_on_the_images_a_protocol_streams_gets_a_note(tmp_path):
    """An experiment on the images a model was trained on (its card: that dataset or folder, split all) said nothing,
    though every accuracy is then optimistic; the design said so (one rule now, model_card.trained_on_note)."""
    from tinycl_nodes.model_card import ModelCard, trained_on_note

    folder = tmp_path / "digits"
    folder.mkdir()
    whole, part = ModelCard(dataset=str(folder.resolve())), ModelCard(dataset=str(folder.resolve()), split="train")
    assert "trained on the whole digits training split" in trained_on_note(whole, "m.onnx", str(folder))
    assert trained_on_note(part, "m.onnx", str(folder)) is None               # the backbone part only
    assert trained_on_note(whole, "m.onnx", str(tmp_path / "other")) is None
    assert "optimistic" in trained_on_note(ModelCard(dataset="mnist"), "m.onnx", "mnist")
    assert trained_on_note(ModelCard(dataset="mnist"), "m.onnx", "fashion_mnist") is None
