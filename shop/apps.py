"""App configs: the project itself (cross-app commands, health), and the admin's."""

from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class ShopAdminConfig(admin_apps.AdminConfig):
    """django.contrib.admin with shop.admin_site.ShopAdminSite as ``admin.site``."""

    default_site = "shop.admin_site.ShopAdminSite"
    # Not the config Django picks for "shop" itself (ShopConfig is).
    default = False


class ShopConfig(AppConfig):
    name = "shop"
    verbose_name = "Shop"

    def ready(self) -> None:
        from django.urls import register_converter

        from shop import checks  # noqa: F401  (registers the checks)
        from shop.routing import IdConverter

        # Before any app's URLconf is loaded: they route ids as <id:...>.
        register_converter(IdConverter, "id")

        from django.core.signals import request_started

        from shop.connections import close_dead_connections

        # Before a request uses a connection its server ended (a PostgreSQL restart).
        request_started.connect(close_dead_connections)
