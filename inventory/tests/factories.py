"""Test products, made through inventory's services."""

from decimal import Decimal

from inventory.models import Product
from inventory.services import product_create


def product_make(
    *, sku: str = "TEA", price: str = "4.50", units: int = 100, name: str = ""
) -> Product:
    return product_create(
        sku=sku, name=name or sku.title(), price=Decimal(price), units=units
    )
