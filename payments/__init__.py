"""Payments: customer accounts, payment methods, and the payments taken for orders."""
