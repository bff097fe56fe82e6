"""Recurring invoices: a schedule that issues an invoice each period, once across instances."""
