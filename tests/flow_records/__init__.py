"""Tests of flow records: the DataFrame, VLAN halves, flow logs, joins across files."""
