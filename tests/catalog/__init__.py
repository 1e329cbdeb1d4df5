"""Tests of the port catalog: the seed rows, the query API, the rules command and lint."""
