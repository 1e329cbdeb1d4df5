"""Tests of peer naming."""
