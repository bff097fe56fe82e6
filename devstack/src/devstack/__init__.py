"""Embedded PostgreSQL, Kafka-protocol broker and SMTP catcher: the system with no settings."""
