"""The flows DataFrame: FLOW_DTYPES, the library's typed view of the flow columns."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from dsaudit.flow_records.columns import (
    COLUMN_KINDS,
    DIRECTION_COUNTERS,
    EVIDENCES,
    FLOW_COLUMNS,
    NAME_SOURCES,
    OUTCOMES,
    PROTO_NAMES,
    STATES,
    Coded,
    Column,
    FlowColumns,
    flow_columns,
    payload_name,
    tcp_state_codes,
)
from dsaudit.naming.namer import Namer

__all__ = [
    "DIRECTION_COUNTERS",
    "EVIDENCES",
    "FLOW_COLUMNS",
    "FLOW_DTYPES",
    "NAME_SOURCES",
    "OUTCOMES",
    "PROTO_NAMES",
    "build_flow_frame",
    "columns_of_frame",
    "empty_flows",
    "frame_of_columns",
    "payload_name",
    "tcp_states",
]

# Column name -> pandas dtype: the contract every later stage relies on.
FLOW_DTYPES: dict[str, Any] = {
    "flow_id": "int64",
    "proto": "string",
    "ip_version": "int8",
    "client_ip": "string",
    "client_port": "int32",
    "server_ip": "string",
    "server_port": "int32",
    "vlan": "Int16",
    "inner_vlan": "Int16",
    # A connection whose answers carried other VLAN ids than its requests (a routed trunk's
    # SPAN) is one flow: vlan_joined is set and these hold the server-to-client VLAN ids.
    "vlan_s2c": "Int16",
    "inner_vlan_s2c": "Int16",
    "vlan_joined": "bool",
    "packets_c2s": "int64",
    "packets_s2c": "int64",
    "bytes_c2s": "int64",
    "bytes_s2c": "int64",
    "payload_bytes_c2s": "int64",
    "payload_bytes_s2c": "int64",
    "start": "datetime64[ns, UTC]",
    "end": "datetime64[ns, UTC]",
    "duration": "float64",
    "state": "string",
    "history": "string",
    "outcome": pd.CategoricalDtype(OUTCOMES),
    "initiator_evidence": pd.CategoricalDtype(EVIDENCES),
    "server_name": "string",
    "name_source": pd.CategoricalDtype(NAME_SOURCES),
    "sni": "string",
    "http_host": "string",
    "connect_target": "string",
    "socks_target": "string",
    "dns_queries": "object",
    "dns_answers": "object",
    "icmp_errors": "object",
    "truncated_packets": "int64",
    "tunnel": "bool",
    # The tunnel the flow's first packet came through: kind and outer endpoints, or null.
    "tunnel_endpoints": "string",
    "tls_client_hello": "bool",
    "max_segment_c2s": "int32",
    "dns_rcode": "string",
    # What the server answered a ClientHello with: an alert ("fatal handshake_failure"), and
    # the issuer of its certificate (seen in clear only up to TLS 1.2).
    "tls_alert": "string",
    "tls_server_issuer": "string",
}
assert list(FLOW_DTYPES) == FLOW_COLUMNS


def empty_flows() -> pd.DataFrame:
    """A DataFrame with the flow columns and no rows."""
    return pd.DataFrame({c: pd.Series(dtype=t) for c, t in FLOW_DTYPES.items()})


def tcp_states(seen: np.ndarray, pkts_s: np.ndarray) -> np.ndarray:
    """Zeek conn_state for TCP flows from the history letters each side showed."""
    return np.array(STATES)[tcp_state_codes(seen, pkts_s)]


def build_flow_frame(
    fs: np.ndarray,
    namer: Namer,
    s2c_vlans: np.ndarray | None = None,
    vlan_joined: np.ndarray | None = None,
) -> pd.DataFrame:
    """Turn the flow store rows ``fs`` and the naming findings into the flows DataFrame.

    ``s2c_vlans`` and ``vlan_joined`` come from dsaudit.flow_records.vlan_join: per flow, the VLAN
    ids of its server-to-client packets and whether it was joined across VLANs.
    """
    if fs.shape[0] == 0:
        return empty_flows()
    return frame_of_columns(flow_columns(fs, namer, s2c_vlans, vlan_joined))


def frame_of_columns(flows: FlowColumns) -> pd.DataFrame:
    """The flows DataFrame, with the dtypes of FLOW_DTYPES, of flow columns."""
    n = len(flows)
    if n == 0:
        return empty_flows()
    data: dict[str, Any] = {}
    for name, kind in COLUMN_KINDS.items():
        values = flows[name]
        if kind == "vlan":
            data[name] = pd.array(np.where(values >= 0, values, 0), dtype="Int16")
            data[name][values < 0] = pd.NA
        elif kind == "time":
            data[name] = pd.to_datetime(values, unit="ns", utc=True)
        elif kind == "list":
            # Every row gets a list of its own, as a DataFrame user may append to one.
            data[name] = [[] if v is None else v for v in values.tolist()]
        else:
            data[name] = values
    return pd.DataFrame(data).astype(FLOW_DTYPES)


def columns_of_frame(df: pd.DataFrame) -> FlowColumns:
    """Flow columns of a flows DataFrame (from another engine or source), for the writers."""
    cols: dict[str, Column] = {}
    for name, kind in COLUMN_KINDS.items():
        series = df[name]
        if kind == "vlan":
            cols[name] = series.astype("Int64").fillna(-1).to_numpy(dtype=np.int64)
        elif kind == "time":
            naive = pd.to_datetime(series, utc=True).dt.tz_localize(None)
            cols[name] = naive.to_numpy(dtype="datetime64[ns]").view(np.int64)
        elif kind == "text":
            codes, uniques = pd.factorize(series.astype(object))
            labels = np.empty(len(uniques) + 1, dtype=object)
            labels[:-1] = list(uniques)
            labels[-1] = None  # the code of a missing value
            cols[name] = Coded(np.where(codes < 0, len(uniques), codes), labels)
        elif kind in ("name", "list"):
            out = np.empty(len(series), dtype=object)
            out[:] = [None if v is None or v is pd.NA else v for v in series.tolist()]
            cols[name] = out
        elif kind == "float":
            cols[name] = series.to_numpy(dtype=np.float64)
        elif kind == "bool":
            cols[name] = series.to_numpy(dtype=bool)
        else:
            cols[name] = series.to_numpy(dtype=np.int64)
    return FlowColumns(cols)
