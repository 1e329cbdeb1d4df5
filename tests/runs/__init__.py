"""Tests of the runs: the live loop and reading a period."""
