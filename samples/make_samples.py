"""Write the deterministic Deep Security sample captures and inventories (never sends)."""

# Run as `python samples/make_samples.py [--out DIR]`. Every random choice comes from a seeded
# generator and every timestamp from the schedule below, so two runs write byte-identical files;
# samples/README.md says what each capture shows and the verdicts an audit must give.

from __future__ import annotations

import argparse
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sample_payloads as pl
from sample_wire import CLIENT, SERVER, Capture, TcpConn, us

START = datetime(2026, 3, 2, 9, 0, 0, tzinfo=UTC)
HEARTBEAT_INTERVAL = 600.0  # the inventories' heartbeat_interval: 10m
LAN_RTT, INTERNET_RTT = 0.00042, 0.0236

ROUTER = "10.20.0.1"
DNS_SERVER = "10.20.0.2"
NTP_SERVER = "10.20.0.3"
MANAGER = "10.20.0.10"
DATABASE = "10.20.0.20"
SMTP_SERVER = "10.20.0.25"
RELAY = "10.20.0.30"
SYSLOG_SERVER = "10.20.0.40"
LDAP_SERVER = "10.20.0.50"
PROXY, PROXY_PORT = "10.20.0.60", 3128
AGENTS = ("10.20.1.11", "10.20.1.12", "10.20.1.13")
SILENT_AGENT = "10.20.1.14"
UNLISTED_SERVER = "10.20.0.99"

UPDATE_HOST = "iaus.activeupdate.trendmicro.com"
LICENSE_HOST = "licenseupdate.trendmicro.com"
FILE_REPUTATION_HOST = "ds110.icrc.trendmicro.com"
WEB_REPUTATION_HOST = "ds11-0-en.url.trendmicro.com"
UNLISTED_HOST = "updates.evil-example.net"
ZONE = {
    "dsm.corp.example": MANAGER,
    "dsr.corp.example": RELAY,
    "pgsql.corp.example": DATABASE,
    "ntp.corp.example": NTP_SERVER,
    "mail.corp.example": SMTP_SERVER,
    "siem.corp.example": SYSLOG_SERVER,
    "dc01.corp.example": LDAP_SERVER,
    UPDATE_HOST: "198.51.100.20",
    LICENSE_HOST: "198.51.100.30",
    FILE_REPUTATION_HOST: "198.51.100.40",
    WEB_REPUTATION_HOST: "198.51.100.50",
    UNLISTED_HOST: "203.0.113.66",
}

# Seconds after the start of a capture. Each agent's first heartbeat; later ones follow every
# HEARTBEAT_INTERVAL, and the manager contacts the agent on 4118 half an interval later.
FIRST_HEARTBEAT = {RELAY: 37.5, "10.20.1.11": 95.25, "10.20.1.12": 151.75, "10.20.1.13": 208.5}
FIRST_NTP_POLL = {
    MANAGER: 2.0,
    RELAY: 11.0,
    "10.20.1.11": 23.0,
    "10.20.1.12": 47.0,
    "10.20.1.13": 71.0,
}
NTP_POLL_INTERVAL = 128.0
DATABASE_POLL_INTERVAL = 30.0
SYSLOG_INTERVAL = 97.0

# Planted problems in problems.pcap (seconds after the start); samples/README.md lists the same.
ROGUE_PORT_AT = 455.0
UNLISTED_NAME_AT = 540.0
LOCALHOST_PORT_AT = 700.0
SCAN_AT = 800.0
PROXY_UPDATE_AT = 960.0
# Planted after everything else, so that the random draws of the earlier flows stay as they were.
FIREWALL_REJECT_AT = 1100.0
MTU_STALL_AT = 1200.0
TLS_ALERT_AT = 1300.0
NXDOMAIN_AT = (400.0, 1000.0)
UNANSWERED_NTP_AT = 1500.0
SMALL_MTU_HEARTBEAT = 1  # which 4118 session to 10.20.1.11 (0-based) meets the small-MTU router
NEXT_HOP_MTU = 1400
SCAN_OPEN_PORTS = (22, 4118)
# The 100 TCP ports the manager's open-port scan probes: well-known services plus Deep Security's.
SCAN_PORTS = (
    7, 9, 13, 21, 22, 23, 25, 26, 37, 53, 79, 80, 81, 88, 106, 110, 111, 113, 119, 135,
    139, 143, 144, 179, 199, 389, 427, 443, 444, 445, 465, 513, 514, 515, 543, 544, 548, 554,
    587, 631, 636, 646, 873, 990, 993, 995, 1025, 1026, 1027, 1028, 1029, 1110, 1433, 1521,
    1720, 1723, 1755, 1900, 2000, 2001, 2049, 2121, 2717, 3000, 3128, 3306, 3389, 3986, 4118,
    4120, 4122, 4899, 5000, 5009, 5051, 5060, 5101, 5190, 5274, 5357, 5432, 5631, 5666, 5800,
    5900, 5985, 6000, 6001, 6646, 7070, 8000, 8008, 8009, 8080, 8081, 8443, 8888, 9100, 9999,
    10000,
)  # fmt: skip
USER_AGENT = "Deep Security Agent/20.0.1-9510"
PUBLIC_CA = "Example Public TLS CA G2"
# (subject, issuer) of the certificate each kind of server presents; the manager signs its own
# and the certificates of the relay and agents it activated.
MANAGER_CERT = ("dsm.corp.example", "dsm.corp.example")
RELAY_CERT = ("dsr.corp.example", "dsm.corp.example")
Cert = tuple[str, str]


class Deployment:
    """Drives the hosts of one capture through a Deep Security deployment's schedule."""

    def __init__(self, seed: int, duration: float) -> None:
        self.cap = Capture(int(START.timestamp()), seed, ZONE, DNS_SERVER, ROUTER)
        self.rng: random.Random = self.cap.rng
        self.duration = duration
        self.database_work: list[tuple[float, str]] = []

    def resolve(self, host: str, name: str, at: float) -> float:
        """Look the name up on the wire if needed; returns when the host may connect."""
        return self.cap.lookup(host, name, us(at)) / 1_000_000

    def tls_session(
        self,
        client: str,
        server: str,
        port: int,
        at: float,
        sni: str | None,
        cert: Cert,
        exchanges: list[tuple[int, int]],
        rtt: float = LAN_RTT,
    ) -> TcpConn:
        """A full TLS connection: handshake, request/response pairs of the given sizes, FIN."""
        if sni is not None:
            at = self.resolve(client, sni, at)
        conn = TcpConn(self.cap, client, server, port, at, rtt)
        conn.handshake()
        self.tls_over(conn, sni, cert, exchanges)
        conn.close()
        return conn

    def tls_over(
        self, conn: TcpConn, sni: str | None, cert: Cert, exchanges: list[tuple[int, int]]
    ) -> None:
        """TLS on an open connection (also inside a proxy tunnel)."""
        rng = self.rng
        subject, issuer = cert
        chain = [pl.certificate(subject, issuer)]
        if issuer != subject:
            chain.append(pl.certificate(issuer, issuer))
        conn.transfer(CLIENT, pl.client_hello(rng, sni, ("http/1.1",)), ack=False)
        conn.now += conn.rtt
        conn.transfer(SERVER, pl.server_hello_flight(rng, "http/1.1", chain))
        conn.transfer(CLIENT, pl.client_finish(rng), ack=False)
        conn.now += conn.rtt
        conn.transfer(SERVER, pl.server_finish(rng))
        for request, response in exchanges:
            conn.transfer(CLIENT, pl.application_data(rng, request), ack=False)
            conn.wait(conn.rtt / 1_000_000 + rng.uniform(0.002, 0.012))
            conn.transfer(SERVER, pl.application_data(rng, response))
            conn.wait(rng.uniform(0.0005, 0.003))

    def times(self, first: float, interval: float) -> list[float]:
        """first, first + interval, ... while inside the capture."""
        count = int((self.duration - first) // interval) + 1 if first < self.duration else 0
        return [first + k * interval for k in range(count)]

    # ---- flows of a healthy deployment -----------------------------------------------------------

    def heartbeats(self, agent: str) -> None:
        """Agent-initiated heartbeats to the manager on 4120; the manager records each one."""
        for at in self.times(FIRST_HEARTBEAT[agent], HEARTBEAT_INTERVAL):
            conn = self.tls_session(
                agent, MANAGER, 4120, at, "dsm.corp.example", MANAGER_CERT, [(1850, 720)]
            )
            self.database_work.append((conn.now / 1_000_000 + 0.05, agent))

    def manager_contacts(self, agent: str, small_mtu_session: int | None = None) -> None:
        """Manager-initiated sessions to the agent's 4118 (bidirectional mode), policy and events.

        The manager connects by address, so these ClientHellos carry no SNI.
        """
        first = FIRST_HEARTBEAT[agent] + HEARTBEAT_INTERVAL / 2
        for number, at in enumerate(self.times(first, HEARTBEAT_INTERVAL)):
            conn = TcpConn(self.cap, MANAGER, agent, 4118, at, LAN_RTT)
            conn.handshake()
            self.tls_over(conn, None, (agent, MANAGER_CERT[0]), [])
            policy = pl.application_data(self.rng, 5200)
            if number == small_mtu_session:
                conn.transfer_through_small_mtu(CLIENT, policy, ROUTER, NEXT_HOP_MTU)
            else:
                conn.transfer(CLIENT, policy)
            conn.wait(0.015)
            conn.transfer(SERVER, pl.application_data(self.rng, 2900))
            conn.close()

    def database(self) -> None:
        """The manager's long-lived PostgreSQL connection: login, job polls, heartbeat writes."""
        conn = TcpConn(
            self.cap,
            MANAGER,
            DATABASE,
            5432,
            self.resolve(MANAGER, "pgsql.corp.example", 0.0),
            LAN_RTT,
        )
        conn.handshake()
        salt = self.rng.randbytes(4)
        conn.transfer(CLIENT, pl.pg_startup("dsm", "dsm"), ack=False)
        conn.transfer(SERVER, pl.pg_md5_challenge(salt), ack=False)
        conn.transfer(CLIENT, pl.pg_md5_password("dsm", "fabricated-sample", salt), ack=False)
        conn.transfer(SERVER, pl.pg_ready_after_login(4711, self.rng.getrandbits(32)))
        polls = [
            (at, "") for at in self.times(DATABASE_POLL_INTERVAL - 0.5, DATABASE_POLL_INTERVAL)
        ]
        for at, agent in sorted(polls + self.database_work):
            conn.now = max(conn.now, us(at))
            if agent:
                host_id = agent.split(".")[-1]
                sql = (
                    "INSERT INTO hostheartbeats (hostid, ip, time) "
                    f"VALUES ({host_id}, '{agent}', now())"
                )
                conn.transfer(CLIENT, pl.pg_query(sql), ack=False)
                conn.transfer(SERVER, pl.pg_command("INSERT 0 1"))
            else:
                sql = "SELECT jobid, type FROM jobs WHERE state = 0 ORDER BY priority LIMIT 50"
                conn.transfer(CLIENT, pl.pg_query(sql), ack=False)
                rows = [(str(self.rng.randrange(10000, 99999)), "UpdateConfiguration")]
                conn.transfer(SERVER, pl.pg_result(("jobid", "type"), rows, "SELECT 1"))

    def time_sync(self, hosts: list[str]) -> None:
        """NTP polls of the site NTP server."""
        for host in hosts:
            first = self.resolve(host, "ntp.corp.example", FIRST_NTP_POLL[host])
            for at in self.times(first, NTP_POLL_INTERVAL):
                self.cap.ntp_poll(host, NTP_SERVER, us(at))

    def syslog(self) -> None:
        """Manager events forwarded to the SIEM as CEF over UDP 514."""
        events = [
            (600, "User Signed In", 3, "suser=admin src=10.20.9.5"),
            (130, "Credentials Generated", 3, "dvchost=10.20.1.11"),
            (190, "Computer Updated", 3, "dvchost=10.20.1.13"),
            (651, "Security Update: Pattern Update on Agents/Appliances Successful", 3, ""),
        ]
        first = self.resolve(MANAGER, "siem.corp.example", 30.0)
        sport = self.cap.ephemeral_port(MANAGER)
        for number, at in enumerate(self.times(first, SYSLOG_INTERVAL)):
            event_id, name, severity, extension = events[number % len(events)]
            when = START + timedelta(seconds=at)
            stamp = f"{when:%b} {when.day:2d} {when:%H:%M:%S}"  # RFC 3164 pads the day with a space
            message = pl.syslog_cef(stamp, "dsm", event_id, name, severity, extension)
            self.cap.udp(us(at), MANAGER, sport, SYSLOG_SERVER, 514, message)

    def alert_mail(self, at: float) -> None:
        """An alert e-mail to the security team over plain SMTP."""
        at = self.resolve(MANAGER, "mail.corp.example", at)
        conn = TcpConn(self.cap, MANAGER, SMTP_SERVER, 25, at, LAN_RTT)
        conn.handshake()
        message = (
            "From: dsm@corp.example\nTo: secops@corp.example\n"
            "Subject: [Deep Security] Alert: Anti-Malware Engine Offline\n\n"
            "The following alert has been raised on dsm.corp.example.\n"
        )
        steps = pl.smtp_dialogue(
            "mail.corp.example",
            "dsm.corp.example",
            "dsm@corp.example",
            "secops@corp.example",
            message,
        )
        for number, (from_client, data) in enumerate(steps):
            conn.transfer(CLIENT if from_client else SERVER, data, ack=number == len(steps) - 1)
            conn.wait(0.0008)
        conn.close()

    def directory_sync(self, at: float) -> None:
        """Synchronisation of computer groups with Active Directory over LDAP 389."""
        at = self.resolve(MANAGER, "dc01.corp.example", at)
        conn = TcpConn(self.cap, MANAGER, LDAP_SERVER, 389, at, LAN_RTT)
        conn.handshake()
        base = "OU=Servers,DC=corp,DC=example"
        conn.transfer(
            CLIENT,
            pl.ldap_bind(1, "CN=svc-dsm,OU=Service,DC=corp,DC=example", "fabricated-sample"),
            ack=False,
        )
        conn.transfer(SERVER, pl.ldap_bind_ok(1), ack=False)
        conn.transfer(CLIENT, pl.ldap_search(2, base, ("dNSHostName", "name")), ack=False)
        entries = b"".join(
            pl.ldap_entry(
                2, f"CN=web{n},{base}", {"dNSHostName": f"web{n}.corp.example", "name": f"web{n}"}
            )
            for n in (1, 2, 3)
        )
        conn.transfer(SERVER, entries + pl.ldap_search_done(2))
        conn.transfer(CLIENT, pl.ldap_unbind(3), ack=False)
        conn.close()

    def license_check(self, at: float) -> None:
        """The manager's license and registration check."""
        self.tls_session(
            MANAGER,
            ZONE[LICENSE_HOST],
            443,
            at,
            LICENSE_HOST,
            (LICENSE_HOST, PUBLIC_CA),
            [(900, 1500)],
            INTERNET_RTT,
        )

    def relay_pulls_updates(self, at: float) -> None:
        """The relay downloads security packages from Trend Micro's update server."""
        self.tls_session(
            RELAY,
            ZONE[UPDATE_HOST],
            443,
            at,
            UPDATE_HOST,
            (UPDATE_HOST, PUBLIC_CA),
            [(380, 20000)],
            INTERNET_RTT,
        )

    def update_from_relay(self, host: str, at: float, size: int) -> None:
        """A host (an agent or the manager) fetches security packages from the relay on 4122."""
        self.tls_session(host, RELAY, 4122, at, "dsr.corp.example", RELAY_CERT, [(410, size)])

    def smart_protection(self, agent: str, at: float) -> None:
        """File (443) then web (5274) reputation queries to the Smart Protection Network."""
        self.tls_session(
            agent,
            ZONE[FILE_REPUTATION_HOST],
            443,
            at,
            FILE_REPUTATION_HOST,
            (FILE_REPUTATION_HOST, PUBLIC_CA),
            [(700, 420)],
            INTERNET_RTT,
        )
        self.tls_session(
            agent,
            ZONE[WEB_REPUTATION_HOST],
            5274,
            at + 90.0,
            WEB_REPUTATION_HOST,
            (WEB_REPUTATION_HOST, PUBLIC_CA),
            [(520, 310)],
            INTERNET_RTT,
        )

    def everyday(self, agents: list[str]) -> None:
        """Flows any deployment has: time, events, mail, directory, license, reputation."""
        self.time_sync([MANAGER, *agents])
        self.syslog()
        self.directory_sync(300.0)
        self.license_check(60.0)
        if self.duration > 905.0:
            self.alert_mail(905.0)
        for number, agent in enumerate(a for a in agents if a != RELAY):
            for at in self.times(330.0 + 7.0 * number, 1000.0):
                self.smart_protection(agent, at)

    # ---- planted problems ----------------------------------------------------------------------

    def blocked_heartbeats(self, agent: str) -> None:
        """(a) Heartbeat SYNs to 4120 that a firewall drops: retransmitted at 1 s and 3 s."""
        for at in self.times(FIRST_HEARTBEAT[agent], HEARTBEAT_INTERVAL):
            at = self.resolve(agent, "dsm.corp.example", at)
            TcpConn(self.cap, agent, MANAGER, 4120, at, LAN_RTT).unanswered((1.0, 3.0))

    def rejected_manager_contacts(self, agent: str) -> None:
        """(b) The manager's 4118 connections to an agent answered by RST/ACK."""
        first = FIRST_HEARTBEAT[agent] + HEARTBEAT_INTERVAL / 2
        for at in self.times(first, HEARTBEAT_INTERVAL):
            TcpConn(self.cap, MANAGER, agent, 4118, at, LAN_RTT).refused()

    def firewall_rejects(self, agent: str, at: float) -> None:
        """(j) A web-reputation query whose SYN a router refuses with ICMP admin-prohibited."""
        at = self.resolve(agent, WEB_REPUTATION_HOST, at)
        conn = TcpConn(self.cap, agent, ZONE[WEB_REPUTATION_HOST], 5274, at, LAN_RTT)
        for retry in range(2):
            syn = conn.segment(CLIENT, "S", seq=conn.isn[CLIENT] if retry else None)
            self.cap.admin_prohibited(conn.now + us(0.0004), ROUTER, syn)
            conn.now += us(1.0)

    def mtu_black_hole(self, agent: str, at: float) -> None:
        """(k) A manager-to-agent session whose large ClientHello never gets through: no ICMP."""
        conn = TcpConn(self.cap, MANAGER, agent, 4118, at, LAN_RTT)
        conn.handshake()
        conn.stalled(pl.client_hello(self.rng, None, ("http/1.1",), padding=1600), (0.2, 0.6, 1.4))

    def tls_alert(self, agent: str, at: float) -> None:
        """(l) A heartbeat whose ClientHello the peer answers with a fatal alert, then FIN."""
        at = self.resolve(agent, "dsm.corp.example", at)
        conn = TcpConn(self.cap, agent, MANAGER, 4120, at, LAN_RTT)
        conn.handshake()
        conn.transfer(CLIENT, pl.client_hello(self.rng, "dsm.corp.example", ("http/1.1",)))
        conn.transfer(SERVER, pl.alert(40), ack=False)
        conn.close(SERVER)

    def nxdomain(self, agent: str) -> None:
        """(c) The silent agent cannot resolve the manager's name: NXDOMAIN, so no heartbeat."""
        for at in NXDOMAIN_AT:
            self.cap.failed_lookup(agent, "dsm.corp.example", us(at))

    def unanswered_ntp(self, host: str, at: float) -> None:
        """(m) One NTP request and no reply: nothing in the capture says why."""
        request = b"\x23" + bytes(47)  # version 4, client mode
        self.cap.udp(us(at), host, self.cap.ephemeral_port(host), NTP_SERVER, 123, request)

    def port_scan(self, target: str) -> None:
        """(g) The manager's open-port scan of an agent: 100 ports in 1.5 s, a new port each."""
        for number, port in enumerate(SCAN_PORTS):
            conn = TcpConn(self.cap, MANAGER, target, port, SCAN_AT + number * 0.015, LAN_RTT)
            if port in SCAN_OPEN_PORTS:
                conn.probe_open()
            else:
                conn.refused()

    def update_through_proxy(self, agent: str) -> None:
        """(h) An agent fetches updates through the site proxy with HTTP CONNECT."""
        conn = TcpConn(self.cap, agent, PROXY, PROXY_PORT, PROXY_UPDATE_AT, LAN_RTT)
        conn.handshake()
        conn.transfer(CLIENT, pl.http_connect(f"{UPDATE_HOST}:443", USER_AGENT), ack=False)
        conn.wait(INTERNET_RTT)  # the proxy resolves the name and connects upstream first
        conn.transfer(SERVER, pl.CONNECT_ESTABLISHED, ack=False)
        conn.wait(0.0003)
        conn.rtt += 40 * 1000  # from here on every exchange crosses the internet behind the proxy
        self.tls_over(conn, UPDATE_HOST, (UPDATE_HOST, PUBLIC_CA), [(380, 16000)])
        conn.close()


def healthy(seed: int, duration: float) -> Deployment:
    """An on-premises deployment, bidirectional, updates through the relay; nothing wrong."""
    site = Deployment(seed, duration)
    agents = [RELAY, *AGENTS]
    site.everyday(agents)
    for agent in agents:
        site.heartbeats(agent)
        site.manager_contacts(agent)
    for at in site.times(120.0, 900.0):
        site.relay_pulls_updates(at)
        site.update_from_relay(MANAGER, at + 150.0, 8000)
        for number, agent in enumerate(AGENTS):
            # The first round brings a new pattern; by the second there is little left to fetch.
            size = 12000 if at < 900 else 2200
            site.update_from_relay(agent, at + 120.0 + 20.0 * number, size)
    site.database()
    return site


def problems(seed: int, duration: float) -> Deployment:
    """The same site with updates through a proxy, one more agent, and the planted problems."""
    site = Deployment(seed, duration)
    agents = [RELAY, *AGENTS]
    site.everyday(agents)
    for agent in (RELAY, "10.20.1.11", "10.20.1.13"):
        site.heartbeats(agent)
    site.blocked_heartbeats("10.20.1.12")  # (a)
    for agent in (RELAY, "10.20.1.12"):
        site.manager_contacts(agent)
    site.manager_contacts("10.20.1.11", small_mtu_session=SMALL_MTU_HEARTBEAT)  # (i)
    site.rejected_manager_contacts("10.20.1.13")  # (b)
    # (c) SILENT_AGENT is in the inventory and nothing is sent to or from it.
    site.tls_session(
        "10.20.1.11",
        UNLISTED_SERVER,
        8443,
        ROGUE_PORT_AT,
        None,
        (UNLISTED_SERVER, UNLISTED_SERVER),
        [(640, 2300)],
    )  # (d)
    site.tls_session(
        "10.20.1.11",
        ZONE[UNLISTED_HOST],
        443,
        UNLISTED_NAME_AT,
        UNLISTED_HOST,
        (UNLISTED_HOST, PUBLIC_CA),
        [(450, 9000)],
        INTERNET_RTT,
    )  # (e)
    site.tls_session(
        "10.20.1.12", RELAY, 4123, LOCALHOST_PORT_AT, None, RELAY_CERT, [(300, 600)]
    )  # (f)
    site.port_scan("10.20.1.11")  # (g)
    site.update_through_proxy("10.20.1.11")  # (h)
    site.database()
    site.firewall_rejects("10.20.1.13", FIREWALL_REJECT_AT)  # (j)
    site.mtu_black_hole("10.20.1.12", MTU_STALL_AT)  # (k)
    site.tls_alert("10.20.1.13", TLS_ALERT_AT)  # (l)
    site.nxdomain(SILENT_AGENT)  # (c)
    site.unanswered_ntp("10.20.1.11", UNANSWERED_NTP_AT)  # (m)
    return site


def inventory(title: str, agents: list[str], updates: str, proxy: bool) -> str:
    """An inventory in the catalog issue's format; agents are listed one by one on purpose."""
    lines = [
        f"# {title}",
        "# Written by samples/make_samples.py; edit the script, not this file.",
        "deployment:",
        '  version: "11.0"',
        "  mode: on-premises",
        "  communication: bidirectional",
        "  database: postgresql",
        "  heartbeat_interval: 10m",
        f"  updates: {updates}",
        "hosts:",
        f"  manager: [{MANAGER}]",
        f"  database: [{DATABASE}]",
        f"  relay: [{RELAY}]",
        f"  agent: [{', '.join(agents)}]",
        f"  dns: [{DNS_SERVER}]",
        f"  ntp: [{NTP_SERVER}]",
        f"  smtp: [{SMTP_SERVER}]",
        f"  syslog: [{SYSLOG_SERVER}]",
        f"  ldap: [{LDAP_SERVER}]",
    ]
    if proxy:
        lines.append(f'  proxy: ["{PROXY}:{PROXY_PORT}"]')
    lines += [
        "names:",
        "  manager: [dsm.corp.example]",
        "  relay: [dsr.corp.example]",
        "  database: [pgsql.corp.example]",
        "  ntp: [ntp.corp.example]",
        "  smtp: [mail.corp.example]",
        "  syslog: [siem.corp.example]",
        "  ldap: [dc01.corp.example]",
    ]
    return "\n".join(lines) + "\n"


def write_all(out: Path) -> list[tuple[Path, int]]:
    """Build every sample into `out`; returns each file with its frame count (0 for YAML)."""
    out.mkdir(parents=True, exist_ok=True)
    written: list[tuple[Path, int]] = []

    site = healthy(seed=20260302, duration=1800.0)
    written.append((out / "healthy.pcap", site.cap.write_pcap(out / "healthy.pcap")))
    agents = [RELAY, *AGENTS]
    text = inventory(
        "Inventory of healthy.pcap: on-premises DS 11.0, updates from the relay.",
        agents,
        "relay",
        False,
    )
    written.append((out / "healthy.inventory.yaml", 0))
    (out / "healthy.inventory.yaml").write_text(text, encoding="utf-8")

    site = problems(seed=20260303, duration=1800.0)
    written.append((out / "problems.pcap", site.cap.write_pcap(out / "problems.pcap")))
    text = inventory(
        "Inventory of problems.pcap: as healthy, plus agent 10.20.1.14 and direct updates "
        "from Trend Micro through the proxy.",
        [*agents, SILENT_AGENT],
        "direct",
        True,
    )
    written.append((out / "problems.inventory.yaml", 0))
    (out / "problems.inventory.yaml").write_text(text, encoding="utf-8")

    site = healthy(seed=20260304, duration=900.0)
    path = out / "manager-host.pcapng"
    written.append((path, site.cap.write_pcapng(path, only=MANAGER)))
    text = inventory(
        "Inventory of manager-host.pcapng: captured on the manager itself.", agents, "relay", False
    )
    written.append((out / "manager-host.inventory.yaml", 0))
    (out / "manager-host.inventory.yaml").write_text(text, encoding="utf-8")
    return written


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and write the samples."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).resolve().parent,
        help="output folder (default: samples/)",
    )
    args = parser.parse_args(argv)
    for path, frames in write_all(args.out):
        detail = f"{frames} frames, " if frames else ""
        print(f"{path.name}: {detail}{path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
