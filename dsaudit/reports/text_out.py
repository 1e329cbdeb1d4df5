"""Write text to a file or to stdout, a failure to write being one line: no pandas needed."""

from __future__ import annotations

import sys
from collections.abc import Iterable

from dsaudit.errors import cannot_write


def write_text(parts: Iterable[str], output: str | None) -> None:
    """Write text pieces to ``output`` (a path) or to stdout."""
    if output in (None, "-"):
        for part in parts:
            sys.stdout.write(part)
        sys.stdout.flush()
        return
    assert output is not None
    try:
        with open(output, "w", encoding="utf-8", newline="") as fh:
            for part in parts:
                fh.write(part)
    except OSError as exc:
        raise cannot_write(output, exc) from None
