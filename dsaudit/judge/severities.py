"""Finding severities, most severe first: constants the CLI reads without importing pandas."""

from __future__ import annotations

SEVERITIES = ["critical", "high", "medium", "low", "info"]
SEVERITY_RANK = {s: i for i, s in enumerate(SEVERITIES)}
