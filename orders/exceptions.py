"""Orders' errors.

ShopError (shop)                    answered to the client
 ├── InvalidOrder       400         names each bad field
 └── Conflict           409
      └── IdempotencyKeyReused      the same key with a different request
BusinessError (sagas)               ends a purchase saga
 └── DestinationNotServed           the carrier does not deliver there
"""

from sagas.exceptions import BusinessError
from shop.exceptions import Conflict, ShopError


class InvalidOrder(ShopError):
    def __init__(self, fields: dict[str, list[str]]):
        super().__init__("Validation error.", {"fields": fields})


class IdempotencyKeyReused(Conflict):
    def __init__(self):
        super().__init__(
            "This Idempotency-Key was already used with a different request."
        )


class DestinationNotServed(BusinessError):
    def __init__(self, country: str):
        super().__init__(f"the carrier does not deliver to {country}")
