"""The bench's workload: the peers' orders, and its happy variant."""

from shop.bench.workload import Customer, Shop, sku


def shop() -> Shop:
    return Shop(
        rich=[Customer(user=f"rich{n}", method_id=n) for n in range(100)],
        poor=[Customer(user=f"poor{n}", method_id=1000 + n) for n in range(10)],
    )


def test_order_i_is_the_peers_a_tenth_from_customers_who_cannot_pay():
    orders = [shop().order(i) for i in range(1000)]
    poor = [i for i, order in enumerate(orders) if order["customer"].startswith("poor")]
    assert poor == [i for i in range(1000) if i % 10 == 9]
    assert orders[123]["items"] == [{"sku": sku(24), "quantity": 1 + 123 % 3}]


def test_the_happy_workload_has_every_order_paid_for():
    orders = [shop().order(i, happy=True) for i in range(1000)]
    assert not [o for o in orders if o["customer"].startswith("poor")]
