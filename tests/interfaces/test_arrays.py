from array import array
from collections.abc import Sequence

import numpy as np

from tinycl_nodes.interfaces import as_sequence, get_type


def test_as_sequence_is_what_rclpy_setters_accept():
    f = as_sequence(np.arange(6, dtype=np.float64).reshape(2, 3), "f")
    b = as_sequence(np.array([[0, 255], [7, 8]]), "B")
    # rclpy: an array.array with the field's type code (numpy arrays are not a Sequence)
    assert isinstance(f, array) and f.typecode == "f" and list(f) == [0, 1, 2, 3, 4, 5]
    assert isinstance(b, array) and b.typecode == "B" and list(b) == [0, 255, 7, 8]
    assert not isinstance(np.zeros(2), Sequence)
    msg = get_type("Features")(data=f)
    assert list(get_type("Features").deserialize(msg.serialize()).data) == list(f)
    assert len(as_sequence(b"", "B")) == 0
    assert list(as_sequence(b"\x01\xff", "B")) == [1, 255]
