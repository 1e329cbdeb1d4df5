"""Packet sources: capture files (pcap, pcapng, gzip) and live interfaces."""
