"""Allow ``python -m dsaudit``."""

from dsaudit.cli import run

run()
