"""Decoders: bytes in, facts out; compiled kernels, payload parsers, tshark's view."""
