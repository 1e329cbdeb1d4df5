"""Tests of live capture: backends, the pcap writer, the live loop and `dsaudit live` on loopback."""
