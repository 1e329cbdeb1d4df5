"""Types of the compiled per-flow name columns (name_columns.pyx)."""

from typing import Any

import numpy as np

def payload_columns(
    flows: dict[int, Any],
    server_name: np.ndarray,
    sni: np.ndarray,
    http_host: np.ndarray,
    connect_target: np.ndarray,
    socks_target: np.ndarray,
    dns_queries: np.ndarray,
    dns_answers: np.ndarray,
    dns_rcode: np.ndarray,
    tls_alert: np.ndarray,
    tls_server_issuer: np.ndarray,
    source: np.ndarray,
    hello: np.ndarray,
    max_segment: np.ndarray,
    detail: np.ndarray,
    source_codes: np.ndarray,
) -> None: ...
def answer_dicts(records: list[Any]) -> list[list[dict[str, Any]] | None]: ...
