"""Turn the seed's host-name text (bare names, URLs, names with paths) into exact host names."""

from __future__ import annotations

import re

_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")


def normalise_hostname(text: str) -> str:
    """The exact host name in `text`; raises ValueError saying why when there is none.

    "https://iaus.activeupdate.trendmicro.com/" -> "iaus.activeupdate.trendmicro.com",
    "ds10.icrc.trendmicro.com/tmcss/" -> "ds10.icrc.trendmicro.com".  Wildcards are refused:
    the audit compares exact names from DNS answers and TLS SNI.
    """
    rest = _SCHEME.sub("", text.strip())
    host = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if "@" in host:
        raise ValueError("user information in a host name is not supported")
    if host.startswith("["):
        raise ValueError("an IP address is not a host name")
    host = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    host = host.rstrip(".").lower()
    if not host:
        raise ValueError("no host name in it")
    if "*" in host:
        raise ValueError("wildcards are not allowed; list exact host names")
    labels = host.split(".")
    if len(labels) < 2:
        raise ValueError(f"{host!r} is not a fully qualified host name")
    if len(host) > 253 or not all(_LABEL.match(label) for label in labels):
        raise ValueError(f"{host!r} is not a valid host name")
    if labels[-1].isdigit():
        raise ValueError(f"{host!r} is an IP address, not a host name")
    return host
