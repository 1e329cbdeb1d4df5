"""Tests of live capture: backends, pcap writer, live loop, `dsaudit live` on loopback."""
