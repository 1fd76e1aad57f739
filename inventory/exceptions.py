"""Inventory's errors.

BusinessError (sagas)
 └── InsufficientStock      fewer units available than an order asks for
"""

from sagas.exceptions import BusinessError


class InsufficientStock(BusinessError):
    def __init__(self, sku: str, requested: int, available: int):
        super().__init__(
            f"insufficient stock for {sku}: "
            f"{requested} requested, {available} available"
        )
        self.sku, self.requested, self.available = sku, requested, available
