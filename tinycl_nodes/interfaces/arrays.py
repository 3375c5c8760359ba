"""numpy → message sequence fields, in the one form every backend takes.

rclpy's generated setters for unbounded sequences (``float32[]``, ``uint8[]``) accept an
``array.array`` of the right type code, or a true sequence of Python numbers — not a numpy
array (rosidl_python asserts ``collections.abc.Sequence``). Our CycloneDDS types take the same
``array.array``. So nodes fill sequence fields through :func:`as_sequence`, one copy, no loop.
"""

from __future__ import annotations

from array import array

import numpy as np

_DTYPES = {"f": np.float32, "d": np.float64, "B": np.uint8, "b": np.int8, "i": np.int32, "I": np.uint32}


def as_sequence(values: object, typecode: str) -> array:
    """``values`` (numpy array, list, bytes…) as an ``array.array`` of ``typecode`` ('f', 'B', …)."""
    if isinstance(values, (bytes, bytearray, memoryview)):
        values = np.frombuffer(values, np.uint8)
    out = array(typecode)
    out.frombytes(np.ascontiguousarray(np.asarray(values).ravel(), _DTYPES[typecode]).tobytes())
    return out
