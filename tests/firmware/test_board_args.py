"""The board tools' mistakes a person makes on the command line (`make firmware-uros DATA=…`, `demo_board.py
--classes …`, `c_board --classes …`): one line naming the problem and exit 2, before anything is built."""

import pytest

from tinycl_nodes.core.errors import InputError
from tinycl_nodes.export.c_board import main as c_board_main, parse_classes

from .conftest import tool_module


def test_parse_classes():
    assert parse_classes("0-7") == tuple(range(8)) and parse_classes("0, 2,9") == (0, 2, 9) and parse_classes("3") == (3,)
    for text, problem in (("0-12", "10, 11, 12: the classes are 0-9"), ("abc", "not class ids"), ("", "not class ids"),
                          ("-1", "not class ids"), ("5-3", "the range 5-3 is empty"), ("0-3,2", "2 given twice")):
        with pytest.raises(InputError, match=problem):
            parse_classes(text)


def test_one_line_and_exit_2(capsys, tmp_path, data_dir):
    demo = tool_module("demo_board")
    for args, problem in ((["--classes", "0-12", "--data", str(data_dir)], "classes '0-12': 10, 11, 12"),
                          (["--classes", "abc", "--data", str(data_dir)], "classes 'abc': not class ids"),
                          (["--data", str(tmp_path / "nowhere")], "MNIST folder not found")):
        assert demo.main(["--build-only", *args]) == 2
        err = capsys.readouterr().err.strip()
        assert problem in err and len(err.splitlines()) == 1, err
        with pytest.raises(SystemExit) as e:
            c_board_main(["--out", str(tmp_path / "gen"), *args])
        err = capsys.readouterr().err.strip()
        assert e.value.code == 2 and problem in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "gen").exists()
