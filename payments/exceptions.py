"""Payments' errors.

BusinessError (sagas)
 ├── InsufficientFunds       the balance does not cover the amount
 └── PaymentMethodUnusable   not the customer's, or deactivated
"""

from sagas.exceptions import BusinessError


class InsufficientFunds(BusinessError):
    def __init__(self, needed, balance):
        super().__init__(f"insufficient balance: {needed} needed, {balance} available")


class PaymentMethodUnusable(BusinessError):
    def __init__(self, method_id: int, why: str):
        super().__init__(f"payment method {method_id} cannot be used: {why}")
