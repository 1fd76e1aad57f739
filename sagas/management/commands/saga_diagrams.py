"""Print every registered saga definition as a Mermaid diagram, or write it as SVG."""

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from sagas import diagrams, registry


class Command(BaseCommand):
    help = (
        "Print each saga definition as Markdown with a Mermaid diagram (the README's "
        "section is this output); with --svg DIR, also write one SVG file each."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("names", nargs="*", help="only the sagas of these names")
        parser.add_argument("--svg", metavar="DIR", help="write <name>-<mode>.svg here")

    def handle(self, *args, names: list[str], **options) -> None:
        chosen = [d for d in registry.definitions() if not names or d.name in names]
        if unknown := set(names) - {d.name for d in chosen}:
            raise CommandError(f"no saga named {', '.join(sorted(unknown))}")
        self.stdout.write(diagrams.markdown(chosen))
        if options["svg"]:
            folder = Path(options["svg"])
            folder.mkdir(parents=True, exist_ok=True)
            for definition in chosen:
                path = folder / f"{definition.name}-{definition.mode}.svg"
                path.write_text(diagrams.svg(definition))
                self.stderr.write(f"wrote {path}")
