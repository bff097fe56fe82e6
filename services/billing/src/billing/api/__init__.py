"""Billing's HTTP API: routers, dependencies and RFC 9457 problem details."""
