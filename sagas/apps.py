"""App config: imports every app's `sagas` module, so its definitions register."""

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class SagasConfig(AppConfig):
    name = "sagas"
    verbose_name = "Sagas"

    def ready(self) -> None:
        from sagas import checks, dispatch  # noqa: F401  (registers checks and routes)

        autodiscover_modules("sagas")
