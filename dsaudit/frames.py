"""Small DataFrame helpers shared by the stages: rows as plain dicts, fast."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd


def row_dicts(frame: pd.DataFrame, index: Sequence[int] | None = None) -> list[dict[str, Any]]:
    """Rows (all, or those at positions ``index``) as dicts; missing values of extension
    columns become None.

    Taken column by column: DataFrame.to_dict("records") boxes cell by cell, which cost the
    merge and the findings most of their time on large captures.
    """
    picked = frame if index is None else frame.iloc[list(index)]
    if not len(picked):
        return []
    cols: dict[str, list[Any]] = {}
    for name in picked.columns:
        values = picked[name].tolist()
        if isinstance(picked[name].dtype, pd.api.extensions.ExtensionDtype):
            values = [None if v is pd.NA else v for v in values]
        cols[str(name)] = values
    names = list(cols)
    return [dict(zip(names, row, strict=True)) for row in zip(*cols.values(), strict=True)]
