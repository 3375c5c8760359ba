"""`make train-frozen` options: a new model name (never silently over the shipped MNIST model),
the dataset and its classes checked before any training starts."""

from tinycl_nodes.training.train_frozen import main


def test_refuses_to_write_over_the_shipped_model(capsys, data_dir):
    assert main(["--name", "mnist_0to5", "--data", str(data_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "mnist_0to5_fp32.onnx exists: choose another --name" in err and len(err.splitlines()) == 1


def test_bad_dataset_classes_and_name_are_one_line(capsys, data_dir, tmp_path):
    for args, problem in ((["--dataset", str(tmp_path / "nowhere")], "image folder not found"),
                          (["--classes", "0,11"], "'11' is not a class of the dataset"),
                          (["--classes", "3"], "at least 2 classes"),
                          (["--name", "bad name!"], "letters, digits")):
        named = args if args[0] == "--name" else ["--name", "x", *args]
        assert main([*named, "--out", str(tmp_path), "--data", str(data_dir)]) == 2
        err = capsys.readouterr().err.strip()
        assert problem in err and len(err.splitlines()) == 1, err
