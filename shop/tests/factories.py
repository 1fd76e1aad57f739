"""Test users: customers and staff."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser
from rest_framework.test import APIClient


def client_for(user: AbstractUser | None) -> APIClient:
    """An API client signed in as ``user`` (anonymous for None)."""
    client = APIClient()
    if user is not None:
        client.force_authenticate(user)
    return client


def user_create(*, username: str, is_staff: bool = False) -> AbstractUser:
    # No password: hashing one costs a few hundred milliseconds per user.
    return get_user_model().objects.create_user(username=username, is_staff=is_staff)
