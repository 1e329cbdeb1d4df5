"""Naming: peer names from TLS SNI, HTTP Host, proxy CONNECT, SOCKS and the capture's DNS answers.

The per-event bookkeeping is compiled (dsaudit.naming.name_state, where the reasons are
given); this module stays the import path of the Namer and of each flow's FlowPayload.
"""

from __future__ import annotations

from dsaudit.naming.name_state import FlowPayload as FlowPayload
from dsaudit.naming.name_state import Namer as Namer

__all__ = ["FlowPayload", "Namer"]
