"""Naming: peer names from the payloads the flow table hands over, and DNS answers."""
