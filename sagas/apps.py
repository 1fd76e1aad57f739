"""App config: loads the runners of each mode, then every app's reactions
(``handlers`` modules) and saga definitions (``sagas`` modules)."""

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class SagasConfig(AppConfig):
    name = "sagas"
    verbose_name = "Sagas"

    def ready(self) -> None:
        # The runners first: registering a definition compiles it into their tasks.
        from sagas import checks, tasks  # noqa: F401

        autodiscover_modules("handlers")
        autodiscover_modules("sagas")
