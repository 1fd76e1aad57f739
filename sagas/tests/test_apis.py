"""Tests of the saga APIs: who sees a saga, the staff list, retry and cancel."""

from types import SimpleNamespace

import pytest

from inventory.tests.factories import product_make
from orders.tests.factories import order_make
from payments.tests.factories import customer_make
from sagas.models import OutboxMessage, Saga, SagaEvent, SagaEventKind, SagaStatus
from shop.tests.factories import client_for, user_create

pytestmark = pytest.mark.django_db

URL = "/api/sagas/"


@pytest.fixture
def world():
    product_make(sku="TEA", price="4.50", units=100)
    ann, ann_card = customer_make(username="ann")
    bob, bob_card = customer_make(username="bob")
    staff = user_create(username="ops", is_staff=True)
    anns = order_make(customer=ann, payment_method_id=ann_card.pk)
    bobs = order_make(customer=bob, payment_method_id=bob_card.pk)
    return SimpleNamespace(
        ann=ann,
        bob=bob,
        staff=staff,
        anns_saga=Saga.objects.get(pk=anns.saga_id),
        bobs_saga=Saga.objects.get(pk=bobs.saga_id),
    )


def fail(saga: Saga) -> None:
    """Put a saga where only an operator can move it (as a compensation giving up)."""
    Saga.objects.filter(pk=saga.pk).update(
        status=SagaStatus.FAILED, error="inventory.release: gave up"
    )


# ONE SAGA ----------------------------------------------------------------------------


def test_the_owner_reads_their_saga_with_its_steps_in_order(world):
    saga = world.anns_saga

    response = client_for(world.ann).get(f"{URL}{saga.pk}/")

    assert response.status_code == 200
    body = response.json()
    assert {k: body[k] for k in ("id", "name", "status", "current_step", "error")} == {
        "id": saga.pk,
        "name": "purchase",
        "status": "PENDING",
        "current_step": 0,
        "error": "",
    }
    assert body["finished_at"] is None
    assert body["created_at"] and body["updated_at"]
    assert body["context"] == {}  # for staff only
    assert [(s["index"], s["name"]) for s in body["steps"]] == [
        (0, "charge_payment"),
        (1, "reserve_stock"),
        (2, "create_shipment"),
        (3, "confirm_order"),
    ]
    assert body["steps"][0] == {
        "index": 0,
        "name": "charge_payment",
        "status": "PENDING",
        "attempts": 0,
        "started_at": None,
        "finished_at": None,
        "duration_ms": None,
        "error": "",
        "task_id": "",
        "compensation_attempts": 0,
        "compensated_at": None,
        "compensation_error": "",
    }
    assert body["events"] == []


def test_a_saga_shows_its_audit_trail_to_staff(world):
    saga = world.anns_saga
    client_for(world.staff).post(
        f"{URL}{saga.pk}/cancel/", {"reason": "customer called"}, format="json"
    )

    body = client_for(world.staff).get(f"{URL}{saga.pk}/").json()

    events = body["events"]
    assert [(e["kind"], e["actor"]) for e in events] == [
        ("OPERATOR_CANCEL", "ops"),
        ("COMPENSATION_STARTED", "system"),
    ]
    assert events[0]["detail"] == "cancelled by ops: customer called"
    assert events[0]["step_name"] == ""
    assert events[0]["created_at"]
    assert body["error"] == "cancelled by ops: customer called"
    assert body["context"]["order_id"] == saga.context["order_id"]


def test_the_owner_sees_what_happened_but_not_who_or_why(world):
    saga = world.anns_saga
    client_for(world.staff).post(
        f"{URL}{saga.pk}/cancel/", {"reason": "customer called"}, format="json"
    )

    body = client_for(world.ann).get(f"{URL}{saga.pk}/").json()

    assert [(e["kind"], e["actor"], e["detail"]) for e in body["events"]] == [
        ("OPERATOR_CANCEL", "", ""),
        ("COMPENSATION_STARTED", "", ""),
    ]
    assert (body["status"], body["error"], body["context"]) == ("COMPENSATING", "", {})


@pytest.mark.parametrize("which", ["others", "missing", "huge"])
def test_a_customer_cannot_read_another_customers_saga(world, which):
    saga_id = {
        "others": world.bobs_saga.pk,
        "missing": world.bobs_saga.pk + 1000,
        "huge": 10**30,
    }[which]

    response = client_for(world.ann).get(f"{URL}{saga_id}/")

    assert response.status_code == 404
    # An id beyond a bigint matches no route at all.
    message = "Not found." if which == "huge" else "Saga not found."
    assert response.json() == {"message": message, "extra": {}}


def test_staff_read_any_saga(world):
    response = client_for(world.staff).get(f"{URL}{world.bobs_saga.pk}/")

    assert response.status_code == 200
    assert response.json()["id"] == world.bobs_saga.pk


def test_anonymous_get_401(world):
    client = client_for(None)

    assert client.get(f"{URL}{world.anns_saga.pk}/").status_code == 401
    assert client.get(URL).status_code == 401
    assert client.post(f"{URL}{world.anns_saga.pk}/retry/").status_code == 401
    assert client.post(f"{URL}{world.anns_saga.pk}/cancel/").status_code == 401


# THE LIST ----------------------------------------------------------------------------


def test_customers_may_not_list_sagas(world):
    response = client_for(world.ann).get(URL)

    assert response.status_code == 403
    assert set(response.json()) == {"message", "extra"}


def test_staff_list_sagas_newest_first(world):
    response = client_for(world.staff).get(URL)

    assert response.status_code == 200
    body = response.json()
    assert body["count"] == 2
    assert [s["id"] for s in body["results"]] == [
        world.bobs_saga.pk,
        world.anns_saga.pk,
    ]
    assert set(body["results"][0]) == {
        "id",
        "name",
        "mode",
        "status",
        "current_step",
        "error",
        "attention",
        "reason",
        "created_at",
        "updated_at",
        "finished_at",
    }


def test_staff_filter_sagas_by_status_and_name(world):
    fail(world.anns_saga)
    client = client_for(world.staff)

    failed = client.get(URL, {"status": "FAILED"}).json()
    purchases = client.get(URL, {"name": "purchase"}).json()
    nothing = client.get(URL, {"name": "refund", "status": "PENDING"}).json()

    assert [s["id"] for s in failed["results"]] == [world.anns_saga.pk]
    assert purchases["count"] == 2
    assert nothing["count"] == 0


def test_staff_filter_sagas_by_mode(world):
    Saga.objects.filter(pk=world.bobs_saga.pk).update(mode="tcc")
    client = client_for(world.staff)

    tcc = client.get(URL, {"mode": "tcc"}).json()
    unknown = client.get(URL, {"mode": "sequential"})

    assert [s["id"] for s in tcc["results"]] == [world.bobs_saga.pk]
    assert unknown.status_code == 400
    assert "mode" in unknown.json()["extra"]["fields"]


def test_the_saga_list_is_paginated(world):
    page = client_for(world.staff).get(URL, {"limit": 1, "offset": 1}).json()

    assert page["count"] == 2
    assert [s["id"] for s in page["results"]] == [world.anns_saga.pk]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"status": "DONE"}, "status"),
        ({"status": "pending"}, "status"),
        ({"name": "x" * 101}, "name"),
        ({"name": "pur\x00chase"}, "name"),
    ],
)
def test_a_bad_filter_is_400(world, params, field):
    response = client_for(world.staff).get(URL, params)

    assert response.status_code == 400
    assert field in response.json()["extra"]["fields"]


# RETRY AND CANCEL --------------------------------------------------------------------


@pytest.mark.parametrize("action", ["retry", "cancel"])
def test_customers_may_not_retry_or_cancel_even_their_own_saga(world, action):
    fail(world.anns_saga)  # retry-able
    events = SagaEvent.objects.count()

    response = client_for(world.ann).post(f"{URL}{world.anns_saga.pk}/{action}/")

    assert response.status_code == 403
    assert SagaEvent.objects.count() == events
    world.anns_saga.refresh_from_db()
    assert world.anns_saga.status == SagaStatus.FAILED


@pytest.mark.parametrize("action", ["retry", "cancel"])
def test_retry_or_cancel_of_no_saga_is_404(world, action):
    response = client_for(world.staff).post(f"{URL}{10**6}/{action}/")

    assert response.status_code == 404
    assert response.json() == {"message": "Saga not found.", "extra": {}}


def test_retrying_a_saga_that_has_not_failed_is_409(world):
    saga = world.anns_saga
    outbox = OutboxMessage.objects.count()

    response = client_for(world.staff).post(f"{URL}{saga.pk}/retry/")

    assert response.status_code == 409
    assert response.json() == {
        "message": "only a FAILED saga can be retried; this one is PENDING",
        "extra": {},
    }
    saga.refresh_from_db()
    assert saga.status == SagaStatus.PENDING
    assert OutboxMessage.objects.count() == outbox


def test_staff_retry_a_failed_saga(world):
    saga = world.anns_saga
    fail(saga)
    outbox = OutboxMessage.objects.count()

    response = client_for(world.staff).post(f"{URL}{saga.pk}/retry/")

    assert response.status_code == 202
    # Nothing passed the pivot, so the retry finishes the undoing.
    assert response.json() == {"id": saga.pk, "status": "COMPENSATING"}
    saga.refresh_from_db()
    assert saga.status == SagaStatus.COMPENSATING
    event = saga.events.get(kind=SagaEventKind.OPERATOR_RETRY)
    assert event.actor == "ops"
    assert OutboxMessage.objects.count() == outbox + 1  # the chain to send


def test_staff_cancel_a_running_saga(world):
    saga = world.anns_saga

    response = client_for(world.staff).post(
        f"{URL}{saga.pk}/cancel/", {"reason": "fraud"}, format="json"
    )

    assert response.status_code == 202
    assert response.json() == {"id": saga.pk, "status": "COMPENSATING"}
    saga.refresh_from_db()
    assert saga.status == SagaStatus.COMPENSATING
    assert saga.error == "cancelled by ops: fraud"


def test_cancel_needs_no_body(world):
    response = client_for(world.staff).post(f"{URL}{world.anns_saga.pk}/cancel/")

    assert response.status_code == 202
    assert (
        world.anns_saga.events.get(kind="OPERATOR_CANCEL").detail == "cancelled by ops"
    )


def test_cancelling_twice_is_409(world):
    client = client_for(world.staff)
    client.post(f"{URL}{world.anns_saga.pk}/cancel/")

    response = client.post(f"{URL}{world.anns_saga.pk}/cancel/")

    assert response.status_code == 409
    assert response.json()["message"] == (
        "only a running saga can be cancelled; this one is COMPENSATING"
    )


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"reason": "x" * 501}, "reason"),
        ({"reason": 5}, "reason"),
        ({"reason": None}, "reason"),
        ({"reason": "ok", "force": True}, "force"),
        (["fraud"], "non_field_errors"),
    ],
)
def test_a_bad_cancel_body_is_400_and_cancels_nothing(world, body, field):
    saga = world.anns_saga

    response = client_for(world.staff).post(
        f"{URL}{saga.pk}/cancel/", body, format="json"
    )

    assert response.status_code == 400
    assert field in response.json()["extra"]["fields"]
    saga.refresh_from_db()
    assert saga.status == SagaStatus.PENDING


def test_the_longest_reason_is_accepted(world):
    response = client_for(world.staff).post(
        f"{URL}{world.anns_saga.pk}/cancel/", {"reason": "x" * 500}, format="json"
    )

    assert response.status_code == 202
