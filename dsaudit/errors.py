"""The project's own error types: everything a user can cause ends up as one of these."""

from __future__ import annotations

import reprlib

_BRIEF = reprlib.Repr()
_BRIEF.maxlevel = 2
_BRIEF.maxlist = _BRIEF.maxtuple = _BRIEF.maxdict = _BRIEF.maxset = 4
_BRIEF.maxstring = _BRIEF.maxother = 80


def brief(value: object) -> str:
    """A bounded repr of data from a file, for error messages.

    YAML aliases can make a tiny file hold an exponentially large value; its full repr
    would be gigabytes of error message.
    """
    return _BRIEF.repr(value)


class DsauditError(Exception):
    """Base of every error dsaudit reports to a user (exit code 2 at the CLI)."""


def cannot_write(path: object, exc: OSError) -> DsauditError:
    """The one-line error for an output that could not be written."""
    return DsauditError(f"cannot write {path}: {exc.strerror or exc}")


class DecodeError(DsauditError):
    """Bytes that do not parse as the protocol they claim to be."""


class CaptureError(DsauditError):
    """A capture file that cannot be read (or read further), with where it broke."""

    def __init__(self, path: str, offset: int | None, message: str) -> None:
        self.path = path
        self.offset = offset
        self.message = message
        where = f"{path}" if offset is None else f"{path}: byte {offset}"
        super().__init__(f"{where}: {message}")

    def __reduce__(self) -> tuple[type[CaptureError], tuple[str, int | None, str]]:
        # Pickle by constructor arguments so the error crosses process boundaries.
        return (type(self), (self.path, self.offset, self.message))


class Location:
    """A place in a data file, kept so every catalog or inventory error names file:line."""

    __slots__ = ("path", "line", "column")

    def __init__(self, path: str, line: int | None = None, column: int | None = None) -> None:
        self.path = path
        self.line = line
        self.column = column

    def __str__(self) -> str:
        if self.line is None:
            return self.path
        return f"{self.path}:{self.line}"

    def __repr__(self) -> str:
        return f"Location({self!s})"


class DataFileError(DsauditError):
    """One or more problems in a YAML data file; all are collected before raising."""

    def __init__(self, problems: list[tuple[Location, str]]) -> None:
        self.problems = problems
        super().__init__("\n".join(f"{loc}: {msg}" for loc, msg in problems))

    def __reduce__(self) -> tuple[type[DataFileError], tuple[list[tuple[Location, str]]]]:
        return (type(self), (self.problems,))


class CatalogError(DataFileError):
    """A broken rules file (the vendor catalog or a site's own rules)."""


class InventoryError(DataFileError):
    """A broken inventory file."""
