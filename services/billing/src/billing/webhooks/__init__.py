"""Outbound webhooks: signed deliveries of billing events to the account's own endpoints."""
