"""Fault injection on the real local stack: what survives what, read only from the outside."""
