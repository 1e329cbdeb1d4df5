"""Flows: the bidirectional flow table (compiled) and address keys."""
