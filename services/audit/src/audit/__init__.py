"""Quittance audit service."""
