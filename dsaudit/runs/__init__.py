"""The commands' runs: the audit of some flows, the live loop, a period, history."""
