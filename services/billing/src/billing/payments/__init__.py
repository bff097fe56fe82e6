"""Payments through a gateway: checkout links, signed webhooks, refunds, customer credit."""
