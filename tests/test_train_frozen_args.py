"""`make train-frozen` options: a new model name (never silently over the shipped MNIST model),
the dataset and its classes checked before any training starts."""

from tinycl_nodes.training.train_frozen import main


def test_refuses_to_write_over_the_shipped_model(capsys, data_dir):
    assert main(["--name", "mnist_0to5", "--data", str(data_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "mnist_0to5_fp32.onnx exists: choose another --name" in err and len(err.splitlines()) == 1


def test_bad_dataset_classes_and_name_are_one_line(capsys, data_dir, tmp_path):
    import cv2
    import numpy as np

    for c in ("cup", "ball", "box"):
        (tmp_path / "objects" / c).mkdir(parents=True)
        cv2.imwrite(str(tmp_path / "objects" / c / "a.png"), np.zeros((8, 8), np.uint8))
    objects = ["--dataset", str(tmp_path / "objects")]
    for args, problem in ((["--dataset", str(tmp_path / "nowhere")], "image folder not found"),
                          ([*objects, "--classes", "cup,plate"], "'plate' is not a class of the dataset (ball, box, cup)"),
                          ([*objects, "--classes", "cup"], "at least 2 classes"),
                          (["--name", "bad name!"], "letters, digits"),
                          (["--projection", "-1"], "--projection -1 (0–4096)")):
        named = args if args[0] == "--name" else ["--name", "x", *args]
        assert main([*named, "--out", str(tmp_path), "--data", str(data_dir)]) == 2
        err = capsys.readouterr().err.strip()
        assert problem in err and len(err.splitlines()) == 1, err



def test_a_folder_smaller_than_a_batch_trains(capsys, data_dir, tmp_path):
    """2 classes x 60 images with one epoch: 'Expected positive integer total_steps, but got 0' (a batch was 128)."""
    import json

    import cv2
    import numpy as np

    from tinycl_nodes.datasets import load_mnist
    from tinycl_nodes.extractor import FrozenExtractor

    X, y = load_mnist("test", data_dir)
    for name, digit in (("a", 0), ("b", 1)):
        (tmp_path / "small" / name).mkdir(parents=True)
        for k, i in enumerate(np.flatnonzero(y == digit)[:60]):
            cv2.imwrite(str(tmp_path / "small" / name / f"{k}.png"), X[i])
    assert main(["--name", "x8", "--dataset", str(tmp_path / "small"), "--classes", "a,b", "--epochs", "1",
                 "--out", str(tmp_path), "--data", str(data_dir)]) == 0, capsys.readouterr().err
    card = json.loads((tmp_path / "x8.json").read_text())
    for kind in ("fp32", "int8"):       # with its feature range: nodes warned "no feature range" for a new model
        assert FrozenExtractor(tmp_path / f"x8_{kind}.onnx").feature_bound is not None, kind
    assert card["images"] == 120 and card["class_names"] == ["a", "b"]
    features = FrozenExtractor(tmp_path / "x8_int8.onnx").extract(X[:4, None].astype(np.float32) / 255)
    assert features.shape == (4, 64) and np.isfinite(features).all()
    (tmp_path / "tiny" / "a").mkdir(parents=True)            # one readable image: no batch to train on
    (tmp_path / "tiny" / "b").mkdir()
    cv2.imwrite(str(tmp_path / "tiny" / "a" / "0.png"), X[0])
    (tmp_path / "tiny" / "b" / "0.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    assert main(["--name", "x9", "--dataset", str(tmp_path / "tiny"), "--classes", "a,b", "--out", str(tmp_path),
                 "--data", str(data_dir)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"error: --classes a,b: {(tmp_path / 'tiny').resolve()} has 1 readable image(s) of them, "
                       "training needs at least 2"), err
