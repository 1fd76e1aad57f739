"""Project-wide writes: the API token a user signs in with, and request counts."""

from datetime import datetime

from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from rest_framework.authtoken.models import Token

from shop.models import RequestCount


@transaction.atomic
def token_obtain(*, user: AbstractBaseUser) -> str:
    """The user's API token, created on first use; the same one every time after."""
    return Token.objects.get_or_create(user=user)[0].key


def request_count_increment(*, key: str, window_end: datetime) -> int:
    """Count one request for ``key`` in the window ending at ``window_end``; return
    the window's count so far, this request included.

    One statement, atomic however many web processes count at once: a read, a
    check and a write (as DRF's own throttles do) would let concurrent requests all
    see the same old count.
    """
    table = RequestCount._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (key, window_end, count) VALUES (%s, %s, 1) "
            "ON CONFLICT (key, window_end) "
            f"DO UPDATE SET count = {table}.count + 1 RETURNING count",
            [key, window_end],
        )
        return cursor.fetchone()[0]


def request_counts_clean(*, before: datetime) -> int:
    """Delete the counts of windows that ended before ``before``."""
    return RequestCount.objects.filter(window_end__lt=before).delete()[0]
