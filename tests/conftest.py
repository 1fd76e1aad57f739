"""Fixtures for cross-app tests: a real worker and relay on the test database."""

import pytest
from django.db import connection

from tests.cluster import Cluster


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


@pytest.fixture
def test_db_name(transactional_db) -> str:
    return connection.settings_dict["NAME"]
