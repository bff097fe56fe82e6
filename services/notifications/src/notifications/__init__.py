"""Quittance notifications service."""
