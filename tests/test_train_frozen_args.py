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

