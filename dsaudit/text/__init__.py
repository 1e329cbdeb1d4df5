"""Text helpers for every stage: safe text, fitted tables."""
