"""Test users: customers and staff."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractUser


def user_create(*, username: str, is_staff: bool = False) -> AbstractUser:
    # No password: hashing one costs a few hundred milliseconds per user.
    return get_user_model().objects.create_user(username=username, is_staff=is_staff)
