"""Flow records: the flow table's flows with their names, from packets or flow logs."""
