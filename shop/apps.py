"""App config of the project itself: cross-app commands and the health check."""

from django.apps import AppConfig


class ShopConfig(AppConfig):
    name = "shop"
    verbose_name = "Shop"

    def ready(self) -> None:
        from django.urls import register_converter

        from shop.routing import IdConverter

        # Before any app's URLconf is loaded: they route ids as <id:...>.
        register_converter(IdConverter, "id")
