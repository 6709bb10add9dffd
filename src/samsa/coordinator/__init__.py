"""Coordinators: producer ids (and, later, transactions and groups)."""
