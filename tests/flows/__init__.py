"""Tests of the flow table and flow records."""
