"""Run the demo batch against a running system (`make demo` starts one first)."""

from django.core.management.base import BaseCommand, CommandError

from shop.chaos import NotSupervised
from shop.demo import MODES, SystemUnavailable, run_demo
from shop.devenv import DevenvError, web_url


class Command(BaseCommand):
    help = "Place a batch of orders covering every scenario over REST and report them."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--url", help="the system's web address (default: from WEB_PORT, 8000)"
        )
        parser.add_argument(
            "--batch", type=int, default=0, help="also place this many plain orders"
        )
        parser.add_argument(
            "--kill-worker",
            type=int,
            choices=range(0, 10),
            default=0,
            metavar="N",
            help="kill -9 the Celery worker of this checkout's `make run` N times "
            "while each mode's orders are processed",
        )
        parser.add_argument(
            "--mode",
            action="append",
            choices=MODES,
            dest="modes",
            help="run only this mode (repeat for more; default: all three in turn)",
        )

    def handle(
        self, *args, url: str, batch: int, kill_worker: int, modes, **options
    ) -> None:
        if batch < 0:
            raise CommandError("--batch must be 0 or more")
        try:
            url = url or web_url()
        except DevenvError as exc:
            raise CommandError(str(exc)) from exc
        try:
            ok = run_demo(
                url=url,
                write=self.stdout.write,
                batch=batch,
                kill_worker=kill_worker,
                modes=tuple(modes or MODES),
            )
        except SystemUnavailable as exc:
            raise CommandError(f"{exc}; start it with `make run`") from exc
        except NotSupervised as exc:
            raise CommandError(str(exc)) from exc
        if ok != 0:
            raise CommandError("the demo did not end as expected")
