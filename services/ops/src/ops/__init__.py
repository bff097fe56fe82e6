"""Quittance ops: the operators' dashboard."""
