"""Tests of the decoders: the compiled one, the payload parsers and tshark's."""
