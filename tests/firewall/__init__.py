"""Tests of the firewall, security-group and proxy exports."""
