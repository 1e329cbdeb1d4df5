"""Address keys and host:port text, as naming writes and classification reads them."""

from __future__ import annotations

import pytest

from dsaudit.flows.addresses import join_host_port, key_from_text, key_to_text, split_host_port


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("iaus.activeupdate.trendmicro.com:443", ("iaus.activeupdate.trendmicro.com", 443)),
        ("dsm.corp.example", ("dsm.corp.example", None)),
        ("[2001:db8::1]:4120", ("2001:db8::1", 4120)),
        ("[2001:db8::1]", ("2001:db8::1", None)),
        ("2001:db8::1", ("2001:db8::1", None)),
        # Hostile text that merely contains a colon stays whole (it never names a port).
        ('=HYPERLINK("http://evil")', ('=HYPERLINK("http://evil")', None)),
        ("[::1", ("[::1", None)),
        ("host:", ("host:", None)),
    ],
)
def test_split_host_port(text: str, expected: tuple[str, int | None]) -> None:
    assert split_host_port(text) == expected


@pytest.mark.parametrize("host", ["files.trendmicro.com", "10.20.0.10", "2001:db8::7"])
def test_join_and_split_round_trip(host: str) -> None:
    assert split_host_port(join_host_port(host, 3128)) == (host, 3128)


@pytest.mark.parametrize("text", ["10.20.0.10", "2001:db8::7", "::ffff:10.1.2.3", "::1"])
def test_address_keys_round_trip(text: str) -> None:
    key = key_from_text(text)
    assert key is not None
    # v4-mapped IPv6 text comes back as the IPv4 it stands for.
    assert key_to_text(key) == text.removeprefix("::ffff:")


def test_not_an_address() -> None:
    assert key_from_text("dsm.corp.example") is None
