"""Quittance retention service."""
