"""Flow-log sources: Zeek, VPC flow logs and Suricata give the flows the audit expects."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pandas as pd
import pytest

from dsaudit.flow_records.flowlogs import FlowLogError, detect, read_logs
from dsaudit.flow_records.flowlogs.vpc import parse_format, read_vpc
from dsaudit.flow_records.flowlogs.zeek import read_zeek
from dsaudit.flow_records.frame import FLOW_DTYPES
from dsaudit.flow_records.reading import read_captures
from tests.corpus import CORPUS, capture_path, needs_corpus

FILES = Path(__file__).resolve().parents[1] / "files" / "flowlogs"


def _one(flows: pd.DataFrame, **match: object) -> dict[str, object]:
    sub = flows
    for k, v in match.items():
        sub = sub[sub[k] == v]
    assert len(sub) == 1, f"{match}: {len(sub)} flows"
    return dict(sub.iloc[0])


def _typed(flows: pd.DataFrame) -> None:
    assert list(flows.columns) == list(FLOW_DTYPES)
    assert {c: str(t) for c, t in flows.dtypes.items()} == {
        c: str(pd.Series(dtype=t).dtype) for c, t in FLOW_DTYPES.items()
    }


def test_zeek_tsv_with_names() -> None:
    got = read_zeek([str(FILES / n) for n in ("conn.log", "ssl.log", "dns.log")])
    flows = got.result.flows
    _typed(flows)
    tls = _one(flows, server_port=4120, client_ip="10.20.1.11")
    assert (tls["server_name"], tls["name_source"], tls["state"]) == (
        "dsm.corp.example",
        "sni",
        "SF",
    )
    assert (tls["outcome"], tls["initiator_evidence"]) == ("established", "syn")
    rej = _one(flows, client_ip="10.20.1.12")
    assert (rej["state"], rej["outcome"]) == ("REJ", "rejected")
    # Zeek flipped this one (^): only the SYN-ACK was seen.
    mid = _one(flows, client_ip="10.20.1.13")
    assert (mid["history"], mid["initiator_evidence"], mid["outcome"]) == (
        "hADad",
        "synack",
        "partial",
    )
    # The DNS answer (through a CNAME) names the later flow to its address.
    web = _one(flows, server_ip="203.0.113.66")
    assert (web["server_name"], web["name_source"]) == ("updates.evil-example.net", "dns")
    dns = _one(flows, server_port=53)
    assert dns["dns_queries"] == ["updates.evil-example.net"]
    assert [a["type"] for a in dns["dns_answers"]] == ["CNAME", "A"]
    assert got.result.stats.first_ts_ns == pd.Timestamp("2026-03-02T09:00:00.1Z").value
    assert not any("No ssl.log" in x for x in got.limitations)


def test_zeek_json_gzipped_without_name_logs(tmp_path: Path) -> None:
    path = tmp_path / "conn.20260302.log.gz"
    lines = (FILES / "conn.json").read_text().splitlines()
    path.write_bytes(gzip.compress("\n".join(lines[:3]).encode()))
    got = read_logs("zeek", [str(path)])
    flows = got.result.flows
    assert len(flows) == 3
    assert _one(flows, client_ip="10.20.1.12")["vlan"] == 20
    udp = _one(flows, proto="udp")
    assert (udp["ip_version"], udp["outcome"], udp["server_port"]) == (6, "one-way", 514)
    assert any("No ssl.log" in x for x in got.limitations)


def test_zeek_json_joins_ssl_records_in_the_same_file() -> None:
    flows = read_zeek([str(FILES / "conn.json")]).result.flows
    assert _one(flows, server_port=4120, client_ip="10.20.1.11")["sni"] == "dsm.corp.example"


def test_zeek_errors_name_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "conn.log"
    text = (FILES / "conn.log").read_text().replace("\t45962\t", "\t45962\textra\t", 1)
    bad.write_text(text)
    with pytest.raises(FlowLogError, match=r"conn.log:10: 22 values for 21 fields"):
        read_zeek([str(bad)])
    with pytest.raises(FlowLogError, match="no conn.log"):
        read_zeek([str(FILES / "ssl.log")])


def test_vpc_default_format_pairs_directions_and_windows() -> None:
    got = read_vpc([str(FILES / "vpc-v2.log")])
    flows = got.result.flows
    _typed(flows)
    hb = _one(flows, server_port=4120, client_ip="10.20.1.11")
    # Two one-minute windows of the client side, the reply once, the duplicate ENI record dropped.
    assert (hb["packets_c2s"], hb["packets_s2c"], hb["bytes_c2s"]) == (13, 8, 1450)
    assert (hb["initiator_evidence"], hb["state"], hb["outcome"]) == ("port", "OTH", "established")
    rej = _one(flows, client_ip="10.20.1.12")
    assert (rej["state"], rej["outcome"], rej["packets_s2c"]) == ("REJ", "rejected", 0)
    assert _one(flows, server_port=514)["outcome"] == "one-way"
    assert flows["server_name"].isna().all()
    text = " ".join(got.limitations)
    assert "no host names" in text and "REJECT records are blocked" in text
    assert "no tcp-flags" in text


def test_vpc_v5_custom_format_with_flags_and_nat() -> None:
    got = read_logs("vpc", [str(FILES / "vpc-v5.log")])
    flows = got.result.flows
    hb = _one(flows, server_port=4120, client_ip="10.20.1.11")
    assert (hb["history"], hb["state"], hb["initiator_evidence"]) == ("ShFf", "SF", "syn")
    assert _one(flows, client_ip="10.20.1.12")["outcome"] == "rejected"
    # Behind the NAT gateway the packet's own source is the agent.
    nat = _one(flows, client_ip="10.20.1.13")
    assert (nat["client_port"], nat["state"]) == (61000, "S1")
    assert not any("no tcp-flags" in x for x in got.limitations)


def test_vpc_headerless_custom_format(tmp_path: Path) -> None:
    fields = (
        "${version} ${srcaddr} ${dstaddr} ${srcport} ${dstport} ${protocol} ${packets} "
        "${bytes} ${start} ${end} ${action} ${tcp-flags}"
    )
    path = tmp_path / "flows.log"
    path.write_text("3 10.20.1.11 10.20.0.10 45962 4120 6 2 120 1772442000 1772442060 ACCEPT 2\n")
    flows = read_vpc([str(path)], parse_format(fields)).result.flows
    row = _one(flows, server_port=4120)
    assert (row["initiator_evidence"], row["outcome"], row["state"]) == ("syn", "unanswered", "S0")
    with pytest.raises(FlowLogError, match="12 values for 14 fields"):
        read_vpc([str(path)])


def test_suricata_eve_flows_and_names() -> None:
    got = read_logs("suricata", [str(FILES / "eve.json")])
    flows = got.result.flows
    _typed(flows)
    assert len(flows) == 5
    tls = _one(flows, server_port=4120, client_ip="10.20.1.11")
    assert (tls["sni"], tls["state"], tls["initiator_evidence"]) == (
        "dsm.corp.example",
        "SF",
        "syn",
    )
    rej = _one(flows, client_ip="10.20.1.12")
    assert (rej["state"], rej["outcome"], rej["vlan"]) == ("REJ", "rejected", 20)
    web = _one(flows, server_ip="203.0.113.66")
    assert (web["server_name"], web["name_source"]) == ("updates.evil-example.net", "dns")
    ping = _one(flows, proto="icmp")
    assert (ping["client_port"], ping["server_port"], ping["outcome"]) == (8, 0, "established")


def test_detection_reads_content_not_names(tmp_path: Path) -> None:
    for name, kind in (("conn.log", "zeek"), ("eve.json", "suricata"), ("vpc-v2.log", "vpc")):
        target = tmp_path / f"{kind}.dat"
        target.write_bytes((FILES / name).read_bytes())
        assert detect(str(target)) == kind
    json_line = tmp_path / "other.json"
    json_line.write_text(json.dumps({"hello": 1}) + "\n")
    assert detect(str(json_line)) is None


# The conn.log baselines of Zeek's own test suite for corpus captures: the same traffic.
ZEEK_BASELINES = {
    "http-dns-wikipedia": ["scripts.policy.protocols.conn.speculative-service__conn-wiki.log"],
    "ldap-starttls-sni": [
        "scripts.base.protocols.ldap.starttls__conn.log",
        "scripts.base.protocols.ldap.starttls__ssl.log",
    ],
    "pcapng-2-interfaces-dns": ["core.pcapng-pktsrc__conn.log"],
    "vxlan-inner-http": [
        "core.tunnels.analyzer-confirmation__conn.log",
        "core.tunnels.analyzer-confirmation__http.log",
    ],
}


@needs_corpus
@pytest.mark.parametrize("name", sorted(ZEEK_BASELINES))
def test_zeek_baseline_matches_the_capture(name: str, tmp_path: Path) -> None:
    paths = []
    for log in ZEEK_BASELINES[name]:
        # btest masks the times; any fixed time keeps the records readable.
        text = (CORPUS / "baselines" / name / log).read_text()
        target = tmp_path / log
        target.write_text(text.replace("XXXXXXXXXX.XXXXXX", "1700000000.000000"))
        paths.append(str(target))
    zeek = read_zeek(paths).result.flows
    engine = read_captures([str(capture_path(name))]).flows
    cols = ["proto", "client_ip", "client_port", "server_ip", "server_port"]
    cols += ["packets_c2s", "packets_s2c", "state"]
    if any("ssl" in p for p in paths):
        cols.append("sni")
    if any("http" in p for p in paths):
        cols.append("http_host")

    def norm(df: pd.DataFrame) -> pd.DataFrame:
        return df[cols].astype(str).sort_values(cols).reset_index(drop=True)

    pd.testing.assert_frame_equal(norm(zeek), norm(engine))
