"""Live capture: interfaces, BPF, the scapy and dumpcap engines, the pcap stream."""
