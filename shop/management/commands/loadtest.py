"""Run the load test against a running system (`make loadtest` starts one first)."""

from django.core.management.base import BaseCommand, CommandError

from shop.demo import SystemUnavailable
from shop.devenv import DevenvError, web_url
from shop.loadtest.plan import OptionsError, add_arguments, options_from
from shop.loadtest.runner import run_loadtest

BAD_ARGUMENT = 2  # as argparse exits


class Command(BaseCommand):
    help = (
        "Place orders over REST in stages (light, medium, heavy), every mode in turn; "
        "write every request, the summary, plots and an HTML page to a report folder."
    )

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)

        def error(message: str):
            # One line, not argparse's usage block: the same as every other refusal.
            if parser.called_from_command_line:
                parser.exit(BAD_ARGUMENT, f"CommandError: {message} (see --help)\n")
            raise CommandError(message, returncode=BAD_ARGUMENT)

        parser.error = error
        return parser

    def add_arguments(self, parser) -> None:
        add_arguments(parser)

    def handle(self, *args, **values) -> None:
        try:
            options = options_from(values)
            url = options.url or web_url()
        except (OptionsError, DevenvError) as exc:
            raise CommandError(str(exc), returncode=BAD_ARGUMENT) from exc
        try:
            clean = run_loadtest(options.with_url(url), write=self.stdout.write)
        except SystemUnavailable as exc:
            raise CommandError(
                f"{exc}; start it with `make run`", returncode=BAD_ARGUMENT
            ) from exc
        if not clean:
            raise CommandError("the system did not come out of the load test clean")
