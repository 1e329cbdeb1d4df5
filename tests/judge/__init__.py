"""Tests of judging: classification, expectations, causes."""
