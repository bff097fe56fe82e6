"""Quittance contracts and infrastructure glue shared by every service; no business logic."""
