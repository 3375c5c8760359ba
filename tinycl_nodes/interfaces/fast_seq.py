"""A faster cyclonedds-python machine for sequences of numbers (float32[] features, uint8[] images).

The stock machine packs element by element through `struct` and rejects numpy arrays. This one
copies the whole buffer at once, accepts list / tuple / array.array / numpy / bytes, and returns
`array.array` (what rclpy returns for unbounded numeric sequences; `np.asarray` of it is zero-copy).
The wire bytes are the same: uint32 length, alignment, packed elements.
"""

from __future__ import annotations

import sys
from array import array
from typing import Any

import numpy as np
from cyclonedds.idl._machinery import PlainCdrV2SequenceOfPrimitiveMachine

_ARRAY_CODES = set("bBhHiIqQfd")
_NATIVE = "<" if sys.byteorder == "little" else ">"


class FastSequenceMachine(PlainCdrV2SequenceOfPrimitiveMachine):
    """Drop-in replacement for PlainCdrV2SequenceOfPrimitiveMachine (same fields, same wire format)."""

    @classmethod
    def supports(cls, machine: Any) -> bool:
        return type(machine) is PlainCdrV2SequenceOfPrimitiveMachine and machine.code in _ARRAY_CODES

    @classmethod
    def replacing(cls, machine: PlainCdrV2SequenceOfPrimitiveMachine) -> "FastSequenceMachine":
        new = cls.__new__(cls)
        new.__dict__.update(machine.__dict__)
        return new

    def _payload(self, value: Any, endian: str) -> bytes:
        code = self.code
        if isinstance(value, np.ndarray):
            return np.ascontiguousarray(value, dtype=np.dtype(code).newbyteorder(endian)).tobytes()
        if isinstance(value, array) and value.typecode == code:
            arr = value
        elif isinstance(value, (bytes, bytearray, memoryview)) and code in "bB":
            return bytes(value)
        else:
            arr = array(code, value)
        if endian != _NATIVE:
            arr = array(code, arr)
            arr.byteswap()
        return arr.tobytes()

    def serialize(self, buffer, value, serialize_kind=None, key_enabled=None):  # noqa: D102
        n = len(value)
        if self.max_length is not None and n > self.max_length:
            raise ValueError(f"sequence of {n} elements exceeds its bound {self.max_length}")
        buffer.align(4)
        buffer.write("I", 4, n)
        if n:
            payload = self._payload(value, buffer._endian)
            if len(payload) != n * self.size:
                raise ValueError(f"sequence payload is {len(payload)} bytes, expected {n * self.size}")
            buffer.align(self.alignment)
            buffer.write_bytes(payload)

    def deserialize(self, buffer, deserialize_kind=None, key_enabled=None):  # noqa: D102
        buffer.align(4)
        n = buffer.read("I", 4)
        out = array(self.code)
        if n:
            buffer.align(self.alignment)
            raw = buffer.read_bytes(n * self.size)
            if len(raw) != n * self.size:
                raise ValueError(f"truncated sequence: {n} elements announced, {len(raw)} bytes left")
            out.frombytes(raw)
            if buffer._endian != _NATIVE:
                out.byteswap()
        return out


def speed_up(cls: type) -> None:
    """Swap the sequence machines of an IdlStruct class for FastSequenceMachine (after populate)."""
    idl = cls.__idl__
    idl.populate()
    for machine in (idl.v1_machine, idl.v2_machine):
        members = getattr(machine, "members_machines", {})
        for name, m in members.items():
            if FastSequenceMachine.supports(m):
                members[name] = FastSequenceMachine.replacing(m)
