"""Quittance billing service."""
