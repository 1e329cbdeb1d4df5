"""Tests of the application-payload decoders (TLS, DNS, HTTP, SOCKS, QUIC)."""
