"""Large arrays handed out again once nothing refers to them any more.

Every fresh multi-megabyte array costs the kernel a page fault and a zeroed page per 4 KiB
when it is first written, and glibc returns blocks that large to the system on free. The
capture reader asks for one buffer and one record array per batch; in a reader thread, whose
allocations glibc serves from their own mappings, that churn doubled the system time of a
read. Reusing a handful of arrays removes it.

An array is handed out again only when its reference count shows the pool as its only
holder: a batch, a numpy view, a memoryview or a slice into it all keep it out. The count an
array held by the pool alone has is measured once, through the same call, rather than
assumed, so a change in how the interpreter counts temporaries cannot make the pool hand out
an array that is still in use.
"""

from __future__ import annotations

import sys

import numpy as np


class ArrayPool:
    """Up to ``keep`` arrays of one dtype, reused when idle; ``take`` never returns one in use."""

    def __init__(self, dtype: type | np.dtype, keep: int = 4) -> None:
        self.dtype = np.dtype(dtype)
        self.keep = keep
        self.reused = 0
        self._arrays: list[np.ndarray] = [np.empty(0, dtype=self.dtype)]
        self._idle = self._refs(0)
        self._arrays.clear()

    def _refs(self, i: int) -> int:
        return sys.getrefcount(self._arrays[i])

    def take(self, shape: int | tuple[int, ...]) -> np.ndarray:
        """An uninitialised array of ``shape``: an idle one of that shape, the leading rows of
        an idle one with more rows (a view, which keeps it out of the pool while it lives),
        or a new one. Batches differ in length: the same few arrays serve them all."""
        want = (shape,) if isinstance(shape, int) else tuple(shape)
        for i in range(len(self._arrays)):
            # Not bound to a local name: that would add a reference to the count below.
            have = self._arrays[i].shape
            if (
                len(have) == len(want)
                and have[1:] == want[1:]
                and have[0] >= want[0]
                and self._refs(i) == self._idle
            ):
                self.reused += 1
                if have[0] == want[0]:
                    return self._arrays[i]
                return self._arrays[i][: want[0]]
        fresh = np.empty(want, dtype=self.dtype)
        if len(self._arrays) < self.keep:
            self._arrays.append(fresh)
        else:
            # Full of arrays of other shapes or in use: let go of one that is idle.
            for i in range(len(self._arrays)):
                if self._refs(i) == self._idle:
                    self._arrays[i] = fresh
                    break
        return fresh
