"""System checks: refuse a fault setting or a broker timeout that cannot work."""

from django.conf import settings
from django.core import checks

from sagas import faults, registry
from shop import brokers


@checks.register()
def check_faults(app_configs, **kwargs) -> list[checks.CheckMessage]:
    try:
        faults.parse(settings.SAGA_FAULTS)
    except ValueError as exc:
        return [checks.Error(str(exc), id="sagas.E001")]
    return []


@checks.register()
def check_visibility_timeout(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """An unacknowledged message comes back after the visibility timeout; if a step
    can run (or wait for a retry) longer, a second worker would get it meanwhile."""
    from sagas.services import unit_timeout

    if not brokers.is_redis(settings.CELERY_BROKER_URL):
        return []  # RabbitMQ requeues a lost consumer's messages at once
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get(
        "visibility_timeout", 3600
    )
    from sagas.tasks import HARD_LIMIT_SLACK

    longest = 0.0
    for definition in registry.definitions():
        for index, phase in definition.tasks():
            policy = definition.retry_policy(max(index, 0), phase)
            # The longest a message can be held: the hard time limit of its run, or
            # the longest countdown (with its jitter) before it runs.
            held = unit_timeout(definition, index, phase) + HARD_LIMIT_SLACK
            countdown = policy.max_backoff * (1 + policy.jitter)
            longest = max(longest, held + countdown)
    if longest >= visibility:
        return [
            checks.Error(
                f"CELERY_VISIBILITY_TIMEOUT ({visibility}s) must exceed the longest "
                f"step deadline plus retry countdown ({longest:.0f}s)",
                id="sagas.E002",
            )
        ]
    return []
