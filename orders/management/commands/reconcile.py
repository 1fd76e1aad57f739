"""Check the purchase invariants across apps; exit 1 while violations remain."""

import json
import sys

from django.core.management.base import BaseCommand

from orders.reconcile import reconcile


class Command(BaseCommand):
    help = (
        "Report orders, products and accounts that break the purchase invariants; "
        "--repair undoes what cancelled orders kept, through the apps' services."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--repair", action="store_true", help="apply safe repairs")
        parser.add_argument("--json", action="store_true", dest="as_json")

    def handle(self, *args, repair: bool, as_json: bool, **options) -> None:
        report = reconcile(repair=repair)
        if as_json:
            self.stdout.write(json.dumps(report.as_dict(), default=str))
        else:
            for violation in report.violations:
                self.stdout.write(str(violation))
            self.stdout.write(report.summary)
        if report.remaining:
            sys.exit(1)  # like makemigrations --check: a finding, not a crash
