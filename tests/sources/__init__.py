"""Tests of the capture file readers."""
