"""Count the work a call does (lines of dsaudit's Python executed), instead of timing it.

A bound on lines executed holds on a loaded machine, where a bound on seconds fails; and
work that grows with the square of the input still blows through it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import FrameType
from typing import Any, TypeVar

T = TypeVar("T")


def lines_run(fn: Callable[[], T]) -> tuple[T | BaseException, int]:
    """Call ``fn``; return its result (or the exception it raised) and the number of lines
    of the dsaudit package that ran."""
    count = 0

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        nonlocal count
        if event == "line":
            count += 1
        return local

    def tracer(frame: FrameType, event: str, arg: Any) -> Any:
        if "/dsaudit/" in frame.f_code.co_filename:
            return local
        return None

    old = sys.gettrace()
    sys.settrace(tracer)
    try:
        result: T | BaseException = fn()
    except BaseException as exc:  # noqa: BLE001 - handed back for the caller to check
        result = exc
    finally:
        sys.settrace(old)
    return result, count


def dns_steps_run(fn: Callable[[], T]) -> tuple[T | BaseException, int]:
    """Call ``fn``; return its result (or the exception it raised) and the number of labels
    and pointers the compiled DNS name walk read meanwhile: where a DNS message's work is
    done since that walk moved out of Python, so counting lines would count nothing."""
    from dsaudit.decode.dns_wire import name_steps

    before = name_steps()
    try:
        result: T | BaseException = fn()
    except BaseException as exc:  # noqa: BLE001 - handed back for the caller to check
        result = exc
    return result, name_steps() - before
