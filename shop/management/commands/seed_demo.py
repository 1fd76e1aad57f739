"""Create the demo data (idempotently) and print it."""

import json

from django.core.management.base import BaseCommand

from shop.seeding import demo_data_seed


class Command(BaseCommand):
    help = "Create demo products, customers (with tokens) and a staff user; print them."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--json", action="store_true", dest="as_json", help="print JSON only"
        )

    def handle(self, *args, as_json: bool = False, **options) -> None:
        data = demo_data_seed()
        if as_json:
            self.stdout.write(json.dumps(data, indent=2))
            return
        staff = data["staff"]
        self.stdout.write(
            f"staff: {staff['username']} / {staff['password']} (token {staff['token']})"
        )
        for c in data["customers"]:
            self.stdout.write(
                f"customer {c['username']} id={c['id']} balance={c['balance']} "
                f"payment_method_id={c['payment_method_id']} token={c['token']}"
            )
        for p in data["products"]:
            self.stdout.write(
                f"product {p['sku']} price={p['price']} available={p['available']}"
            )
