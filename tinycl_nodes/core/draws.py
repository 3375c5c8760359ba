"""PCG32 draws the C core can make too: a device and its host twin pick the same replays.

numpy's Generator (PCG64 + its own sampling algorithms) has no small C twin, so a head that must
train bit-for-bit like ``micro_ros_firmware/core/src/tinycl_latent.c`` draws from this instead
(``LatentUpperHead(..., draws="pcg32")``). Same generator (O'Neill's ``pcg32_random_r``, XSH-RR,
``pcg32_srandom_r`` seeding), same bounded integers (``(u32 · n) >> 32``: a bias below n / 2³²,
deterministic, no rejection loop) and the same two algorithms on both sides:

* ``choice(n, k)``: Knuth's selection sampling (Algorithm S): k of n without replacement, in
  increasing order, one draw per candidate until k are chosen, no scratch memory;
* ``permutation(n)``: Fisher–Yates from the last position down.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .errors import InputError, StateError

_MULT = 6364136223846793005
_M64 = (1 << 64) - 1
_M32 = (1 << 32) - 1
KIND = "pcg32"


class Pcg32:
    """PCG32 (64-bit state, 32-bit output) with numpy-like ``choice`` / ``permutation``."""

    def __init__(self, seed: int = 0, stream: int = 0) -> None:
        self.inc = ((int(stream) << 1) | 1) & _M64
        self.state = 0
        self.next_u32()
        self.state = (self.state + (int(seed) & _M64)) & _M64
        self.next_u32()

    def next_u32(self) -> int:
        old = self.state
        self.state = (old * _MULT + self.inc) & _M64
        xorshifted = (((old >> 18) ^ old) >> 27) & _M32
        rot = old >> 59
        return ((xorshifted >> rot) | (xorshifted << ((-rot) & 31))) & _M32

    def below(self, n: int) -> int:
        """An integer in [0, n) (n ≥ 1)."""
        return (self.next_u32() * int(n)) >> 32

    def choice(self, n: int, k: int, replace: bool = False) -> np.ndarray:
        """``k`` distinct integers of ``range(n)``, increasing (selection sampling)."""
        if replace or not 0 <= k <= n:
            raise InputError(f"pcg32 choice: {k} of {n} without replacement only")
        out, need = [], int(k)
        for i in range(int(n)):
            if need == 0:
                break
            if self.below(n - i) < need:
                out.append(i)
                need -= 1
        return np.asarray(out, np.int64)

    def permutation(self, n: int) -> np.ndarray:
        """A permutation of ``range(n)`` (Fisher–Yates, last position first)."""
        a = list(range(int(n)))
        for i in range(int(n) - 1, 0, -1):
            j = self.below(i + 1)
            a[i], a[j] = a[j], a[i]
        return np.asarray(a, np.int64)

    def state_dict(self) -> dict[str, Any]:
        return {"bit_generator": KIND, "state": self.state, "inc": self.inc}

    @classmethod
    def from_state(cls, obj: Any, name: str = "rng_state") -> "Pcg32":
        """Inverse of :meth:`state_dict`; StateError if malformed."""
        if not isinstance(obj, dict) or obj.get("bit_generator") != KIND:
            raise StateError(f"state: {name!r} is not a pcg32 state")
        state, inc = obj.get("state"), obj.get("inc")
        for v in (state, inc):
            if isinstance(v, bool) or not isinstance(v, int) or not 0 <= v <= _M64:
                raise StateError(f"state: {name!r} holds a bad pcg32 word {v!r}")
        if not inc & 1:
            raise StateError(f"state: {name!r}: pcg32 increment must be odd")
        rng = cls.__new__(cls)
        rng.state, rng.inc = state, inc
        return rng
