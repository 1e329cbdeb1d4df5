"""Where the shared corpus of real captures lives, and its tshark-derived truth."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

CORPUS = (Path(__file__).resolve().parents[1] / ".." / "shared" / "corpus").resolve()
PCAPS = CORPUS / "pcaps"


def corpus_names() -> list[str]:
    """Capture names (file stems), or [] when the corpus is not beside the repository."""
    if not PCAPS.is_dir():
        return []
    return sorted(p.name.rsplit(".", 1)[0] for p in PCAPS.iterdir())


def capture_path(name: str) -> Path:
    """The capture file of ``name`` (whatever its extension)."""
    for ext in (".pcap", ".pcapng"):
        p = PCAPS / (name + ext)
        if p.exists():
            return p
    raise FileNotFoundError(name)


def truth(name: str) -> dict[str, Any]:
    """The truth JSON of ``name``."""
    data: dict[str, Any] = json.loads((CORPUS / "truth" / f"{name}.json").read_text())
    return data


needs_corpus = pytest.mark.skipif(not PCAPS.is_dir(), reason="../shared/corpus is not present")
