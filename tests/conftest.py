"""Fixtures for cross-app tests: real workers, relays, beats and brokers on the test
database."""

from collections.abc import Iterator

import pytest
from django.db import connection

from tests.cluster import Cluster, LocalRabbitMQ, LocalRedis, web_server

# Short deadlines so that stalls and lost work show within seconds.
TIMING = {
    "SAGA_STEP_TIMEOUT": "3",
    "SAGA_RECOVERY_GRACE": "1",
    "SAGA_RECOVERY_SECONDS": "1",
    "SAGA_PROBE_RESEND": "3",
    "OUTBOX_SWEEP_SECONDS": "1",
}


@pytest.fixture(scope="session")
def cluster(django_db_setup, django_db_blocker):
    """One worker and one relay for the whole session, reading the test database.

    Tests that use it need ``@pytest.mark.django_db(transaction=True)``: what the test
    writes must be committed for the worker processes to see it.
    """
    with django_db_blocker.unblock():
        db_name = connection.settings_dict["NAME"]
    running = Cluster(db_name=db_name).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def web(cluster) -> Iterator[str]:
    """web_server for a test module: tests that use it need
    ``@pytest.mark.django_db(transaction=True)``, as with ``cluster``."""
    with web_server(cluster) as url:
        yield url


@pytest.fixture
def test_db_name(transactional_db) -> str:
    return connection.settings_dict["NAME"]


@pytest.fixture
def timing(settings):
    """The test process places orders too: it computes deadlines as the workers do."""
    settings.SAGA_STEP_TIMEOUT = float(TIMING["SAGA_STEP_TIMEOUT"])
    settings.SAGA_RECOVERY_GRACE = float(TIMING["SAGA_RECOVERY_GRACE"])


@pytest.fixture
def start_cluster(test_db_name, timing):
    """Start a cluster of the test's own, with fault injection and settings set
    through the environment as an operator would; stopped after the test."""
    started: list[Cluster] = []

    def start(
        faults: str = "",
        *,
        beat: bool = True,
        concurrency: int = 2,
        pool: str = "prefork",
        **env,
    ) -> Cluster:
        cluster = Cluster(
            db_name=test_db_name,
            env={**TIMING, "SAGA_FAULTS": faults, **env},
            concurrency=concurrency,
            pool=pool,
        )
        started.append(cluster.start(beat=beat))
        return cluster

    yield start
    for cluster in started:
        cluster.stop()


@pytest.fixture
def broker(request, settings):
    """A broker of the test's own, Redis or RabbitMQ by the test's parameter, which the
    test may stop, restart or freeze; the test process checks health against it."""
    if request.param == "rabbitmq":
        if reason := LocalRabbitMQ.missing():
            pytest.skip(reason)
        server = LocalRabbitMQ().start()
    else:
        server = LocalRedis().start()
    settings.CELERY_BROKER_URL = server.url
    yield server
    if request.param == "rabbitmq":
        server.remove()
    else:
        server.stop()
