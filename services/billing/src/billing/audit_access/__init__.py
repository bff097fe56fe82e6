"""Tokens that let audit know a user or staff member of billing (STAFF-ACCESS)."""
