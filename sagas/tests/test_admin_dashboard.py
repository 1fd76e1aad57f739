"""The saga dashboard: exact figures over a known set of sagas, each one a link to the
list of exactly the sagas it counts; staff who may view sagas only."""

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from sagas import lifecycle, statistics
from sagas.definitions import Mode, Phase
from sagas.exceptions import StepTimeout
from sagas.models import Saga, SagaStatus
from sagas.tests.factories import purchase_place, saga_made, step_fail, step_run
from shop.tests.factories import user_create

pytestmark = pytest.mark.django_db

DASHBOARD = reverse("admin:sagas_saga_dashboard")
SAGAS = reverse("admin:sagas_saga_changelist")
FIGURE = re.compile(
    r'<a class="figure" data-figure="([^"]+)" href="([^"]+)">([^<]*)</a>'
)


def _ended(saga: Saga, *, ago: timedelta, took_ms: int) -> Saga:
    """Say the saga ended ``ago``, ``took_ms`` after it was created."""
    finished = timezone.now() - ago
    created = finished - timedelta(milliseconds=took_ms)
    Saga.objects.filter(pk=saga.pk).update(created_at=created, finished_at=finished)
    return saga


def _timed_out(mode: str) -> Saga:
    """Its second step ran past its deadline: undone, newest first."""
    saga = purchase_place(mode)
    step_run(saga, 0)
    step_fail(saga, 1, StepTimeout("took 31.0s, deadline 30.0s"))
    for index in (2, 1, 0) if mode == Mode.TCC else (0,):
        step_run(saga, index, Phase.COMPENSATION)
    step_run(saga, -1, Phase.END)
    return saga


@pytest.fixture
def known():
    """Sagas whose figures are known, by what they are."""
    minutes = timedelta(minutes=1)
    completed = [
        _ended(saga_made("completed"), ago=10 * minutes, took_ms=ms)
        for ms in (100, 200, 300, 400)
    ]
    retried = _ended(saga_made("retried"), ago=5 * minutes, took_ms=150)
    undone = _ended(saga_made("compensated"), ago=20 * minutes, took_ms=500)
    timed_out = _ended(_timed_out(Mode.TCC), ago=30 * minutes, took_ms=600)
    yesterday = _ended(
        saga_made("completed", mode=Mode.TCC), ago=120 * minutes, took_ms=1000
    )
    long_ago = _ended(
        saga_made("completed", mode=Mode.CHOREOGRAPHY),
        ago=3 * 1440 * minutes,
        took_ms=50,
    )
    pending = [purchase_place(Mode.CHOREOGRAPHY) for _ in range(2)]
    failed = saga_made("failed")
    return {
        "completed": completed,
        "retried": retried,
        "undone": undone,
        "timed_out": timed_out,
        "yesterday": yesterday,
        "long_ago": long_ago,
        "pending": pending,
        "failed": failed,
    }


def _figures(client) -> dict[str, tuple[str, str]]:
    response = client.get(DASHBOARD)
    assert response.status_code == 200
    html = response.content.decode()
    return {
        key: (text, url.replace("&amp;", "&"))
        for key, url, text in FIGURE.findall(html)
    }


def _listed(client, url: str) -> set[int]:
    response = client.get(url)
    assert response.status_code == 200, url
    return {row.pk for row in response.context["cl"].result_list}


def _counted(client, url: str) -> int:
    response = client.get(url)
    assert response.status_code == 200, url
    return response.context["cl"].result_count


def _ids(*sagas: Saga) -> set[int]:
    return {saga.pk for saga in sagas}


def test_the_dashboard_counts_exactly(admin_client, known):
    figures = _figures(admin_client)
    text = {key: value for key, (value, _) in figures.items()}

    # At work now, and FAILED.
    assert text["at-work-PENDING-choreography"] == "2"
    assert text["at-work-PENDING"] == "2"
    assert text["at-work-FAILED-orchestration"] == "1"
    assert text["at-work-RUNNING"] == "0"
    assert text["attention-needed"] == "1"
    # Ended in the last hour: orchestration 100, 150, 200, 300, 400 (completed) and
    # 500 ms (compensated); TCC 600 ms (compensated, a timeout).
    assert text["ended-1h-orchestration-completed"] == "5"
    assert text["ended-1h-orchestration-compensated"] == "1"
    assert text["ended-1h-orchestration-rate"] == "83.3%"
    assert text["ended-1h-orchestration-p50"] == "250 ms"
    assert text["ended-1h-orchestration-p95"] == "475 ms"
    assert text["ended-1h-tcc-completed"] == "0"
    assert text["ended-1h-tcc-compensated"] == "1"
    assert text["ended-1h-choreography-rate"] == "-"
    assert text["ended-1h-all-completed"] == "5"
    assert text["ended-1h-all-compensated"] == "2"
    assert text["ended-1h-all-rate"] == "71.4%"
    assert text["ended-1h-all-p50"] == "300 ms"
    assert text["ended-1h-all-p95"] == "570 ms"
    # And in the last day, with the TCC saga of 1000 ms two hours ago; never the
    # one three days ago.
    assert text["ended-24h-tcc-completed"] == "1"
    assert text["ended-24h-all-completed"] == "6"
    assert text["ended-24h-all-p50"] == "350 ms"
    assert text["ended-24h-all-p95"] == "860 ms"
    assert text["ended-24h-choreography-completed"] == "0"
    # Where they were undone, timed out and retried.
    assert text["steps-1h-orchestration-create_shipment-undone_at"] == "1"
    assert text["steps-1h-tcc-try_stock-undone_at"] == "1"
    assert text["steps-1h-tcc-try_stock-timed_out_at"] == "1"
    assert text["steps-24h-orchestration-charge_payment-retried_at"] == "1"
    assert "steps-1h-orchestration-create_shipment-timed_out_at" not in text


def test_every_figure_opens_the_list_of_exactly_the_sagas_it_counts(
    admin_client, known
):
    figures = _figures(admin_client)

    for key, (value, url) in figures.items():
        if value.isdigit():
            assert _counted(admin_client, url) == int(value), key
    every = {key: url for key, (_, url) in figures.items()}
    assert _listed(admin_client, every["ended-1h-orchestration-completed"]) == _ids(
        *known["completed"], known["retried"]
    )
    assert _listed(admin_client, every["ended-1h-all-p95"]) == _ids(
        *known["completed"], known["retried"], known["undone"], known["timed_out"]
    )
    assert _listed(admin_client, every["ended-24h-tcc-completed"]) == _ids(
        known["yesterday"]
    )
    assert _listed(admin_client, every["steps-1h-tcc-try_stock-timed_out_at"]) == _ids(
        known["timed_out"]
    )
    assert _listed(
        admin_client, every["steps-1h-orchestration-create_shipment-undone_at"]
    ) == _ids(known["undone"])
    assert _listed(admin_client, every["attention-needed"]) == _ids(known["failed"])
    assert _listed(admin_client, every["at-work-PENDING"]) == _ids(*known["pending"])


def test_the_outbox_backlog_per_app(admin_client, known):
    figures = _figures(admin_client)

    for app in ("sagas", "orders", "inventory", "payments"):
        _, url = figures[f"outbox-{app}"]
        assert url.endswith("?published=no")
    pending, _ = figures["outbox-orders"]
    assert int(pending) > 0  # orders placed; no relay here
    page = admin_client.get(DASHBOARD).content.decode()
    orders = page[page.index('data-app="orders"') :]
    age = re.search(r'<td class="age">([^<]*)</td>', orders).group(1)
    assert age != "-"


def test_the_dashboard_queries_do_not_grow_with_sagas(
    admin_client, known, django_assert_max_num_queries
):
    with django_assert_max_num_queries(30) as few:
        admin_client.get(DASHBOARD)
    for _ in range(3):
        _ended(saga_made("compensated", mode=Mode.TCC), ago=timedelta(0), took_ms=5)
        lifecycle.saga_start(name="purchase", context={"order_id": 0})

    with django_assert_max_num_queries(len(few)):
        admin_client.get(DASHBOARD)


def test_sagas_that_ended_are_found_by_when_through_an_index():
    now = timezone.now()
    Saga.objects.bulk_create(
        Saga(
            name="purchase",
            status=SagaStatus.COMPLETED,
            finished_at=now - timedelta(minutes=n),
        )
        for n in range(3000)  # two days of sagas, one a minute
    )
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE sagas_saga")

    plan = Saga.objects.filter(statistics.ended_within_q("1h", now=now)).explain()

    assert "saga_ended_at" in plan


def test_the_ended_filter_lists_sagas_that_ended_within_the_window(admin_client, known):
    hour = _listed(admin_client, f"{SAGAS}?ended=1h")
    day = _listed(admin_client, f"{SAGAS}?ended=24h")

    assert known["yesterday"].pk in day - hour
    assert known["long_ago"].pk not in day
    assert known["failed"].pk not in day  # FAILED is not ended
    assert _listed(admin_client, f"{SAGAS}?ended=1w") == _listed(admin_client, SAGAS)


# WHO MAY SEE IT ----------------------------------------------------------------------


def test_the_dashboard_is_for_staff_who_may_view_sagas(client):
    customer = user_create(username="cust")
    client.force_login(customer)
    response = client.get(DASHBOARD)
    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))

    staff = user_create(
        username="staff", is_staff=True, permissions=["orders.view_order"]
    )
    client.force_login(staff)
    assert client.get(DASHBOARD).status_code == 403
    assert (
        "saga-dashboard-index-link"
        not in client.get(reverse("admin:index")).content.decode()
    )

    viewer = user_create(
        username="viewer", is_staff=True, permissions=["sagas.view_saga"]
    )
    client.force_login(viewer)
    assert client.get(DASHBOARD).status_code == 200
    index = client.get(reverse("admin:index")).content.decode()
    assert f'href="{DASHBOARD}" id="saga-dashboard-index-link"' in index
    assert 'id="saga-dashboard-link"' in client.get(SAGAS).content.decode()


def test_anonymous_visitors_are_sent_to_log_in(client):
    response = client.get(DASHBOARD)

    assert response.status_code == 302
    assert response.url.startswith(reverse("admin:login"))
