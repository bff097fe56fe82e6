"""Integrations: third parties an account admin lets in, with scopes, every read recorded."""
