"""Flows: the bidirectional flow table and the finished flow records built from it."""
