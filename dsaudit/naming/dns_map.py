"""What the capture's DNS answers say: address -> name, per client and over time.

The map is kept by compiled code (dsaudit.naming.name_state) since naming adds to it for
every answered address; this module stays its import path, and that of DnsDigest.
"""

from __future__ import annotations

from dsaudit.naming.dns_digest import DnsDigest as DnsDigest
from dsaudit.naming.name_state import DnsMap as DnsMap

__all__ = ["DnsDigest", "DnsMap"]
