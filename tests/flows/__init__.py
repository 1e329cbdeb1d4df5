"""Tests of the flow table and address keys."""
