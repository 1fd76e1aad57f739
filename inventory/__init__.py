"""Inventory: products and the stock held for orders."""
