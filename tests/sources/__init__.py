"""Tests of packet sources: capture files, live capture backends, the pcap writer."""
