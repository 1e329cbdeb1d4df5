"""Decoders: bytes in, facts out; pure functions and compiled kernels with no I/O."""
