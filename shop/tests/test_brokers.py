"""What sagashop changes in kombu's Redis transport, on the test's Redis."""

import pytest
from django.conf import settings

from shop import brokers
from shop.celery import app


@pytest.mark.skipif(
    not brokers.is_redis(settings.CELERY_BROKER_URL), reason="the broker is not Redis"
)
def test_a_redis_channel_reuses_one_client_until_its_pool_is_replaced():
    with app.connection_for_write(settings.CELERY_BROKER_URL) as connection:
        channel = connection.default_channel
        first = channel._create_client()
        assert channel._create_client() is first  # not a new one per command
        assert first.connection_pool is channel.pool
        assert first.ping()

        channel._disconnect_pools()  # as after a fork or a lost connection

        second = channel._create_client()
        assert second is not first
        assert second.connection_pool is channel.pool
        assert second.ping()
