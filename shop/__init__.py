"""The sagashop project: settings, URLs and the Celery app."""

from shop.celery import app as celery_app

__all__ = ("celery_app",)
