"""The peers' workload: 100 products, 100 customers with money and 10 without, and
order i for product i%100+1, quantity 1+i%3, from a customer without money when
i%10 == 9 (so it fails at payment and is undone); or, ``happy``, every order from a
customer with money (what a happy saga costs, alone)."""

from dataclasses import dataclass
from decimal import Decimal

from django.contrib.auth.models import User
from django.db import transaction

from inventory.services import product_create
from orders.services import order_place
from payments.services import account_create, payment_method_create

PRODUCTS, RICH, POOR = 100, 100, 10
STOCK = 1_000_000_000  # ample: no order of the workload runs out
BALANCE = Decimal("1000000000.00")
PRICE = Decimal("1.00")


@dataclass(frozen=True)
class Customer:
    user: User
    method_id: int


@dataclass(frozen=True)
class Shop:
    rich: list[Customer]
    poor: list[Customer]

    def order(self, i: int, *, happy: bool = False) -> dict:
        """The arguments of ``order_place`` for order i of the workload."""
        fails = i % 10 == 9 and not happy
        buyer = self.poor[(i // 10) % POOR] if fails else self.rich[i % RICH]
        return {
            "customer": buyer.user,
            "items": [{"sku": sku(i % PRODUCTS + 1), "quantity": 1 + i % 3}],
            "payment_method_id": buyer.method_id,
        }


def sku(number: int) -> str:
    return f"BENCH{number:03d}"


@transaction.atomic
def shop_seed() -> Shop:
    """The products and customers, made through the apps' services."""
    for number in range(1, PRODUCTS + 1):
        product_create(
            sku=sku(number), name=f"product {number}", price=PRICE, units=STOCK
        )
    rich = [_customer(f"bench-rich-{n}", BALANCE) for n in range(1, RICH + 1)]
    poor = [_customer(f"bench-poor-{n}", Decimal("0")) for n in range(1, POOR + 1)]
    return Shop(rich=rich, poor=poor)


def _customer(username: str, balance: Decimal) -> Customer:
    user = User(username=username)
    user.set_unusable_password()  # no hashing: they never log in
    user.save()
    account_create(customer=user, balance=balance)
    method = payment_method_create(customer_id=user.pk, label="card")
    return Customer(user=user, method_id=method.pk)


def place(shop: Shop, i: int, mode: str, *, happy: bool = False) -> int:
    """Place order i as the REST API does; return its saga's id."""
    order, _ = order_place(**shop.order(i, happy=happy), mode=mode)
    return order.saga_id
