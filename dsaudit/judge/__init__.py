"""Judging flows: rules that explain them, expected flows, causes, findings, roles."""
