"""Types of the compiled DNS wire parser (dns_wire.pyx)."""

from typing import TypeVar

T = TypeVar("T")

HEADER_LENGTH: int
MAX_NAME_OCTETS: int
MAX_POINTER_JUMPS: int

def parse_wire(
    data: bytes,
) -> tuple[
    int,
    int,
    list[tuple[str, int, int]],
    list[tuple[str, int, int, int, str | None]],
    int,
    int,
    bool,
]: ...
def digest_wire(data: bytes, into: type[T]) -> T: ...
def name_steps() -> int: ...
