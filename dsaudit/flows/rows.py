"""Named, typed columns of the flow table's rows, for the stages above flow records.

The flow table keeps each flow as one row of int64 cells whose layout belongs to the
compiled kernel (dsaudit.flows.table_kernel). Stages above flow records read flows through
this view instead, so the layout can change in one place; tests/test_layers.py checks that
no module there imports the kernel's column numbers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dsaudit.flows.table_kernel import (
    F_FIRST_TS,
    F_LAST_TS,
    F_PKTS_C,
    F_PKTS_S,
    F_PROTO,
    F_SEEN,
    F_VLAN0,
    F_VLAN1,
    H_F,
    H_R,
    RESP_OFFSET,
)


@dataclass(frozen=True, slots=True)
class FlowRows:
    """Columns of some flow table rows (views into the table, not copies)."""

    rows: np.ndarray

    def __post_init__(self) -> None:
        if self.rows.ndim != 2:
            raise ValueError("FlowRows needs the table's 2-D rows")

    def __len__(self) -> int:
        return int(self.rows.shape[0])

    @property
    def proto(self) -> np.ndarray:
        """IP protocol number."""
        return self.rows[:, F_PROTO]

    @property
    def first_ns(self) -> np.ndarray:
        """Time of the first packet, ns since the epoch."""
        return self.rows[:, F_FIRST_TS]

    @property
    def last_ns(self) -> np.ndarray:
        """Time of the last packet, ns since the epoch."""
        return self.rows[:, F_LAST_TS]

    @property
    def packets_c2s(self) -> np.ndarray:
        """Packets from the client."""
        return self.rows[:, F_PKTS_C]

    @property
    def packets_s2c(self) -> np.ndarray:
        """Packets from the server."""
        return self.rows[:, F_PKTS_S]

    @property
    def tagged(self) -> np.ndarray:
        """True where the flow's packets carried a VLAN tag (outer or inner)."""
        return (self.rows[:, F_VLAN0] >= 0) | (self.rows[:, F_VLAN1] >= 0)

    def _flag(self, letter: int, offset: int) -> np.ndarray:
        return ((self.rows[:, F_SEEN] >> (letter + offset)) & 1).astype(bool)

    @property
    def fin_c2s(self) -> np.ndarray:
        """The client sent a FIN."""
        return self._flag(H_F, 0)

    @property
    def fin_s2c(self) -> np.ndarray:
        """The server sent a FIN."""
        return self._flag(H_F, RESP_OFFSET)

    @property
    def reset(self) -> np.ndarray:
        """Either side sent a RST."""
        return self._flag(H_R, 0) | self._flag(H_R, RESP_OFFSET)
