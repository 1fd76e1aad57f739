"""System checks: refuse a saga definition, a reaction, a fault setting or a broker
timeout that cannot work, and warn of a heartbeat too short for the steps.
``manage.py check`` names the saga and the step."""

import math

from celery import current_app
from django.apps import apps
from django.conf import settings
from django.core import checks

from sagas import faults, registry
from sagas.choreography import handlers
from sagas.definitions import Mode
from sagas.definitions.base import HARD_LIMIT_SLACK
from sagas.messaging.inbox import AbstractInboxMessage
from sagas.orchestration.engine import unit_timeout
from shop import brokers, timelimits


@checks.register()
def check_definitions(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """Every registered definition can run (its problem names saga and step)."""
    return [checks.Error(problem, id="sagas.E003") for problem in registry.problems()]


@checks.register()
def check_reactions(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """A choreographed saga's every event has the reactions its flow needs, and no
    app reacts to an event its saga never publishes."""
    errors = []
    for definition in registry.definitions():
        if definition.mode != Mode.CHOREOGRAPHY:
            continue
        where = f"saga {definition.name!r} ({definition.mode})"
        declared = {
            (h.app, topic, h.step, h.role)
            for h in handlers.declared(saga=definition.name)
            for topic in h.topics
        }
        for app, topic, step, role in sorted(definition.expected_handlers() - declared):
            errors.append(
                checks.Error(
                    f"{where}, step {step!r}: nothing in {app} reacts to {topic} "
                    f"({role}); declare it in {app}/handlers.py",
                    id="sagas.E004",
                )
            )
        for app, topic, step, role in sorted(declared - definition.expected_handlers()):
            problem = (
                "an event the saga never publishes"
                if topic not in definition.topics()
                else "an event that does not call for it"
            )
            errors.append(
                checks.Error(
                    f"{where}, step {step!r}: {app} reacts to {topic} ({role}), "
                    f"{problem}",
                    id="sagas.E005",
                )
            )
    return errors


@checks.register()
def check_handlers(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """Every declared reaction belongs to a choreographed saga that runs, has a name
    of its own in its app (its task and its inbox consumer), and an inbox to use."""
    errors = []
    choreographed = {
        d.name for d in registry.definitions() if d.mode == Mode.CHOREOGRAPHY
    }
    names = [h.name for h in handlers.declared()]
    for handler in handlers.declared():
        where = f"{handler.app}/handlers.py, {handler.function.__name__}"
        if handler.saga not in choreographed:
            errors.append(
                checks.Error(
                    f"{where}: it reacts for saga {handler.saga!r}, which is no "
                    "registered choreography",
                    id="sagas.E007",
                )
            )
        if names.count(handler.name) > 1:
            errors.append(
                checks.Error(
                    f"{where}: another reaction of {handler.app} has the name "
                    f"{handler.name!r}; a second one would drop its messages as "
                    "copies",
                    id="sagas.E007",
                )
            )
        if not _has_inbox(handler.app):
            errors.append(
                checks.Error(
                    f"{where}: {handler.app} has no InboxMessage model (a subclass "
                    "of sagas.messaging.inbox.AbstractInboxMessage)",
                    id="sagas.E007",
                )
            )
    return errors


def _has_inbox(app_label: str) -> bool:
    try:
        model = apps.get_model(app_label, "InboxMessage")
    except LookupError:
        return False
    return issubclass(model, AbstractInboxMessage)


@checks.register()
def check_faults(app_configs, **kwargs) -> list[checks.CheckMessage]:
    try:
        faults.parse(settings.SAGA_FAULTS)
    except ValueError as exc:
        return [checks.Error(str(exc), id="sagas.E001")]
    return []


@checks.register()
def check_default_mode(app_configs, **kwargs) -> list[checks.CheckMessage]:
    if settings.SAGA_DEFAULT_MODE not in Mode.values:
        return [
            checks.Error(
                f"SAGA_DEFAULT_MODE is {settings.SAGA_DEFAULT_MODE!r}; "
                f"it must be one of {', '.join(Mode.values)}",
                id="sagas.E006",
            )
        ]
    return []


@checks.register()
def check_visibility_timeout(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """An unacknowledged message comes back after the visibility timeout; if a step
    can run (or wait for a retry) longer, a second worker would get it meanwhile."""
    if not brokers.is_redis(settings.CELERY_BROKER_URL):
        return []  # RabbitMQ requeues a lost consumer's messages at once
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get(
        "visibility_timeout", 3600
    )
    longest = 0.0
    for definition in registry.definitions():
        if definition.mode == Mode.CHOREOGRAPHY:
            continue  # its reactions retry with Celery's own backoff, up to 60 s
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


@checks.register()
def check_heartbeat(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """A solo worker sends no heartbeat while a step runs. Celery sends one at least
    every 2/3 of BROKER_HEARTBEAT and RabbitMQ drops a connection silent for twice
    it, then hands the running step to another worker: a step stuck to its hard limit
    must be reported and acknowledged (the watchdog's look, a publish that may take
    BROKER_TIMEOUT twice) within 4/3 of the heartbeat (README, *Scale*)."""
    heartbeat = settings.CELERY_BROKER_HEARTBEAT
    if not brokers.is_amqp(settings.CELERY_BROKER_URL) or not heartbeat:
        return []  # Redis has no heartbeats; without them nothing drops a connection
    # Every task's own limit: the orchestrated units and the choreographed reactions
    # (a task without one runs under no limit in a solo worker, so none is reached).
    longest = max(
        (task.time_limit or 0 for task in current_app.tasks.values()), default=0
    )
    report = timelimits.WATCH_SECONDS + 2 * settings.BROKER_TIMEOUT
    if not longest or longest + report < heartbeat * 4 / 3:
        return []
    return [
        checks.Warning(
            f"a task's hard time limit ({longest:.0f}s) and its report "
            f"({report:.2f}s) do not fit in 4/3 of BROKER_HEARTBEAT ({heartbeat}s): "
            "on RabbitMQ a solo worker running it that long loses its connection and "
            "the task runs again elsewhere",
            hint="set BROKER_HEARTBEAT to at least "
            f"{math.floor((longest + report) * 3 / 4) + 1}, and RabbitMQ's own "
            "heartbeat setting as high (the lower of the two is used; 60 s by "
            "default), or shorten the timeouts; with no solo workers, add sagas.W001 "
            "to SILENCED_SYSTEM_CHECKS",
            id="sagas.W001",
        )
    ]
