"""The saga and outbox admin: read-only pages, operator filters and actions."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

import inventory.models
import orders.models
import payments.models
from inventory.services import product_create
from orders.services import order_place
from payments.services import account_create, payment_method_create
from sagas import history, lifecycle, registry
from sagas.definitions import Mode
from sagas.models import (
    OutboxMessage,
    Saga,
    SagaEvent,
    SagaEventKind,
    SagaStatus,
)
from sagas.tests.factories import saga_made

pytestmark = pytest.mark.django_db

SAGAS = reverse("admin:sagas_saga_changelist")
OUTBOX_MODELS = [
    OutboxMessage,
    orders.models.OutboxMessage,
    inventory.models.OutboxMessage,
    payments.models.OutboxMessage,
]


@pytest.fixture
def customer():
    user = get_user_model().objects.create_user("carol", password="pw")
    account_create(customer=user, balance=Decimal("100.00"))
    return user


@pytest.fixture
def place(customer):
    """Place an order through the orders service; return the saga it started."""
    product_create(sku="MUG", name="Mug", price=Decimal("8.50"), units=50)
    method = payment_method_create(customer_id=customer.pk, label="card")

    def place(mode: str = Mode.ORCHESTRATION) -> Saga:
        order, _ = order_place(
            customer=customer,
            items=[{"sku": "MUG", "quantity": 1}],
            payment_method_id=method.pk,
            mode=mode,
        )
        return Saga.objects.get(pk=order.saga_id)

    return place


def _fail(saga: Saga) -> None:
    """Put a saga where the engine leaves one that gave up (no service does it)."""
    Saga.objects.filter(pk=saga.pk).update(
        status=SagaStatus.FAILED, error="boom", deadline_at=None
    )


def _listed(response) -> list[int]:
    assert response.status_code == 200
    return sorted(row.pk for row in response.context["cl"].result_list)


def _messages(response) -> list[tuple[str, str]]:
    return [(m.level_tag, m.message) for m in get_messages(response.wsgi_request)]


def _act(client, action: str, *sagas: Saga):
    return client.post(
        SAGAS,
        {"action": action, "_selected_action": [s.pk for s in sagas]},
        follow=True,
    )


# PAGES -------------------------------------------------------------------------------


def test_saga_pages_render_for_staff(admin_client, place):
    saga = place()
    lifecycle.saga_cancel(saga_id=saga.pk, actor="someone", reason="testing")

    assert _listed(admin_client.get(SAGAS)) == [saga.pk]
    page = admin_client.get(reverse("admin:sagas_saga_change", args=[saga.pk]))

    assert page.status_code == 200
    html = page.content.decode()
    steps = ["charge_payment", "reserve_stock", "create_shipment", "confirm_order"]
    positions = [html.index(f'data-step="{name}"') for name in steps]
    assert positions == sorted(positions)  # the steps table, in index order
    assert 'data-kind="OPERATOR_CANCEL"' in html  # the history
    assert "&quot;order_id&quot;: " in html  # the context, indented JSON
    assert 'name="_save"' not in html


@pytest.mark.parametrize("mode", Mode.values)
def test_saga_page_draws_its_definition_coloured_by_its_steps(
    admin_client, place, mode
):
    saga = place(mode)
    saga.steps.filter(index=0).update(status="FAILED")
    definition = registry.definition(saga.name, mode)

    page = admin_client.get(reverse("admin:sagas_saga_change", args=[saga.pk]))

    html = page.content.decode()
    start = html.index(
        '<svg xmlns="http://www.w3.org/2000/svg"', html.index("field-diagram")
    )
    drawing = html[start : html.index("</svg>", start)]
    assert f"<title>purchase ({mode})</title>" in drawing
    for name in definition.step_names:
        assert name in drawing
    assert drawing.count('fill="#fbe3e3"') == 1  # the failed step, and only it
    assert f'<div class="readonly">{Mode(mode).label}</div>' in html  # its mode


def test_saga_changelist_filters_by_mode(admin_client, place):
    place(Mode.ORCHESTRATION)
    tcc = place(Mode.TCC)

    assert _listed(admin_client.get(SAGAS, {"mode": "tcc"})) == [tcc.pk]


def test_saga_is_read_only(admin_client, place):
    saga = place()
    change = reverse("admin:sagas_saga_change", args=[saga.pk])

    assert admin_client.get(reverse("admin:sagas_saga_add")).status_code == 403
    assert admin_client.post(change, {"name": "other"}).status_code == 403
    delete = reverse("admin:sagas_saga_delete", args=[saga.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert Saga.objects.get(pk=saga.pk).name == "purchase"


@pytest.mark.parametrize("model", OUTBOX_MODELS, ids=lambda m: m._meta.label)
def test_outbox_pages_render_read_only(admin_client, model):
    message = model.objects.create(
        topic="Something", aggregate_id="7", payload={"order_id": 7, "why": "test"}
    )
    info = model._meta.app_label, model._meta.model_name
    changelist = reverse("admin:{}_{}_changelist".format(*info))
    change = reverse("admin:{}_{}_change".format(*info), args=[message.pk])

    assert _listed(admin_client.get(changelist)) == [message.pk]
    page = admin_client.get(change)
    assert page.status_code == 200
    assert "&quot;why&quot;: &quot;test&quot;" in page.content.decode()
    assert admin_client.get(reverse("admin:{}_{}_add".format(*info))).status_code == 403
    assert admin_client.post(change, {"topic": "Changed"}).status_code == 403


def test_a_sagas_page_is_for_staff_who_may_view_sagas(client, place):
    saga = place()
    change = reverse("admin:sagas_saga_change", args=[saga.pk])
    staff = get_user_model().objects.create_user("staff", is_staff=True)
    client.force_login(staff)

    assert client.get(change).status_code == 403
    assert client.get(SAGAS).status_code == 403

    staff.user_permissions.add(Permission.objects.get(codename="view_saga"))
    client.force_login(get_user_model().objects.get(pk=staff.pk))
    assert client.get(change).status_code == 200


def test_non_staff_user_is_sent_to_the_login_page(client, customer):
    client.force_login(customer)

    for url in (SAGAS, reverse("admin:sagas_saga_change", args=[1])):
        response = client.get(url)

        assert response.status_code == 302
        assert response.url.startswith(reverse("admin:login"))


# FILTERS AND SEARCH ------------------------------------------------------------------


def test_needs_attention_lists_failed_and_flagged_sagas(admin_client, place):
    failed, flagged, pending = place(), place(), place()
    _fail(failed)
    Saga.objects.filter(pk=flagged.pk).update(attention="its work cannot be sent")

    needed = _listed(admin_client.get(SAGAS, {"attention": "needed"}))
    assert needed == sorted([failed.pk, flagged.pk])
    assert _listed(admin_client.get(SAGAS)) == sorted(
        [failed.pk, flagged.pk, pending.pk]
    )


def test_overdue_lists_active_sagas_past_their_deadline(admin_client, place):
    overdue, on_time, failed = place(), place(), place()
    past = timezone.now() - timedelta(minutes=5)
    Saga.objects.filter(pk=overdue.pk).update(deadline_at=past)
    Saga.objects.filter(pk=failed.pk).update(status=SagaStatus.FAILED, deadline_at=past)

    assert _listed(admin_client.get(SAGAS, {"attention": "overdue"})) == [overdue.pk]
    assert on_time.status == SagaStatus.PENDING  # active, but not overdue


def test_search_by_id_or_idempotency_key(admin_client, place):
    first, second = place(), place()

    assert _listed(admin_client.get(SAGAS, {"q": str(second.pk)})) == [second.pk]
    key = first.idempotency_key
    assert _listed(admin_client.get(SAGAS, {"q": key})) == [first.pk]
    assert _listed(admin_client.get(SAGAS, {"q": "no-such-key"})) == []


def test_search_by_order_id(admin_client, place):
    lifecycle.saga_start(name="purchase", context={})  # no order: ids part ways
    place()
    saga = place()
    order = orders.models.Order.objects.get(saga_id=saga.pk)
    assert order.pk != saga.pk

    for term in (f"order {order.pk}", f"order #{order.pk}", f"Order:{order.pk}"):
        assert _listed(admin_client.get(SAGAS, {"q": term})) == [saga.pk], term
    # A number alone: the saga of that id, and the saga of the order of that id.
    same_id = Saga.objects.filter(pk=order.pk).values_list("pk", flat=True)
    found = _listed(admin_client.get(SAGAS, {"q": str(order.pk)}))
    assert found == sorted({saga.pk, *same_id})
    assert _listed(admin_client.get(SAGAS, {"q": f"order-{order.pk}"})) == [saga.pk]
    assert _listed(admin_client.get(SAGAS, {"q": "order 99999999"})) == []
    assert _listed(admin_client.get(SAGAS, {"q": "order 9" * 30})) == []


def test_the_list_shows_each_sagas_mode_and_duration(admin_client):
    quick = saga_made("completed", mode=Mode.TCC)
    slow = saga_made("completed")
    Saga.objects.filter(pk=slow.pk).update(
        finished_at=slow.created_at + timedelta(seconds=83)
    )

    html = admin_client.get(SAGAS).content.decode()

    row = html[html.index(f">{quick.pk}</a>") :]
    row = row[: row.index("</tr>")]
    assert '<td class="field-mode_code">tcc</td>' in row
    took = history.duration(quick.finished_at - quick.created_at)
    assert f'<td class="field-duration">{took}</td>' in row
    clock = history.instant(quick.created_at).split()[1]  # to the ms
    assert f'<span class="clock">{clock}</span></time></td>' in row
    # Sorted by duration, longest first: column 7 past the checkbox.
    assert _listed_in_order(admin_client.get(SAGAS, {"o": "-7"}))[:1] == [slow.pk]
    assert "1 min 23 s" in admin_client.get(SAGAS).content.decode()


def _listed_in_order(response) -> list[int]:
    assert response.status_code == 200
    return [row.pk for row in response.context["cl"].result_list]


def test_outbox_published_filter(admin_client, place):
    place()
    published = OutboxMessage.objects.create(
        topic="Done", aggregate_id="1", published_at=timezone.now()
    )
    pending = set(
        OutboxMessage.objects.filter(published_at__isnull=True).values_list(
            "pk", flat=True
        )
    )
    changelist = reverse("admin:sagas_outboxmessage_changelist")

    assert pending  # the saga's start event, waiting for the relay
    assert set(_listed(admin_client.get(changelist, {"published": "no"}))) == pending
    assert _listed(admin_client.get(changelist, {"published": "yes"})) == [published.pk]


# ACTIONS -----------------------------------------------------------------------------


def test_retry_action_retries_a_failed_saga_through_the_service(admin_client, place):
    saga = place()
    _fail(saga)

    response = _act(admin_client, "retry_sagas", saga)

    saga.refresh_from_db()
    # Nothing ran before the pivot, so the retry goes back: compensate, then cancel.
    assert saga.status == SagaStatus.COMPENSATING
    assert SagaEvent.objects.filter(
        saga=saga, kind=SagaEventKind.OPERATOR_RETRY, actor="admin"
    ).exists()
    assert ("success", "1 saga retried.") in _messages(response)


def test_retry_action_reports_each_saga_it_may_not_retry(admin_client, place):
    failed, pending = place(), place()
    _fail(failed)

    response = _act(admin_client, "retry_sagas", failed, pending)

    assert Saga.objects.get(pk=failed.pk).status == SagaStatus.COMPENSATING
    assert Saga.objects.get(pk=pending.pk).status == SagaStatus.PENDING
    assert _messages(response) == [
        (
            "warning",
            f"Saga {pending.pk} not retried: only a FAILED saga can be retried; "
            "this one is PENDING",
        ),
        ("success", "1 saga retried."),
    ]


def test_cancel_action_compensates_a_pending_saga(admin_client, place):
    saga = place()

    response = _act(admin_client, "cancel_sagas", saga)

    saga.refresh_from_db()
    assert saga.status == SagaStatus.COMPENSATING
    event = SagaEvent.objects.get(saga=saga, kind=SagaEventKind.OPERATOR_CANCEL)
    assert event.actor == "admin"
    assert event.detail == "cancelled by admin: cancelled from the admin"
    assert ("success", "1 saga cancelled.") in _messages(response)


def test_cancel_action_leaves_a_failed_saga_alone(admin_client, place):
    saga = place()
    _fail(saga)

    response = _act(admin_client, "cancel_sagas", saga)

    assert Saga.objects.get(pk=saga.pk).status == SagaStatus.FAILED
    assert [level for level, _ in _messages(response)] == ["warning"]


def test_change_page_buttons_post_to_the_services(admin_client, place):
    saga = place()
    _fail(saga)
    retry = reverse("admin:sagas_saga_retry", args=[saga.pk])
    change = reverse("admin:sagas_saga_change", args=[saga.pk])

    assert f'formaction="{retry}"' in admin_client.get(change).content.decode()
    assert admin_client.get(retry).status_code == 405
    assert Saga.objects.get(pk=saga.pk).status == SagaStatus.FAILED

    response = admin_client.post(retry)

    assert response.status_code == 302
    assert response.url == change
    assert Saga.objects.get(pk=saga.pk).status == SagaStatus.COMPENSATING
    cancel = reverse("admin:sagas_saga_cancel", args=[saga.pk])
    admin_client.post(cancel)  # refused: it is compensating already
    assert Saga.objects.get(pk=saga.pk).status == SagaStatus.COMPENSATING


def test_change_page_buttons_need_the_pages_csrf_token(admin_user, place):
    saga = place()
    _fail(saga)
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    retry = reverse("admin:sagas_saga_retry", args=[saga.pk])

    assert client.post(retry).status_code == 403
    assert Saga.objects.get(pk=saga.pk).status == SagaStatus.FAILED
    page = client.get(reverse("admin:sagas_saga_change", args=[saga.pk]))
    token = re.search(
        r'id="saga_form".*?name="csrfmiddlewaretoken" value="([^"]+)"',
        page.content.decode(),
        re.DOTALL,
    ).group(1)

    assert client.post(retry, {"csrfmiddlewaretoken": token}).status_code == 302
    assert Saga.objects.get(pk=saga.pk).status == SagaStatus.COMPENSATING


def test_staff_who_may_only_view_cannot_act(client, place):
    saga = place()
    _fail(saga)
    viewer = get_user_model().objects.create_user("viewer", is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_saga"))
    client.force_login(viewer)

    changelist = client.get(SAGAS)
    assert changelist.status_code == 200
    assert "retry_sagas" not in changelist.content.decode()
    _act(client, "retry_sagas", saga)
    response = client.post(reverse("admin:sagas_saga_retry", args=[saga.pk]))

    assert response.status_code == 403
    assert Saga.objects.get(pk=saga.pk).status == SagaStatus.FAILED


# QUERIES -----------------------------------------------------------------------------


def _changelist_queries(client) -> list[str]:
    with CaptureQueriesContext(connection) as queries:
        assert client.get(SAGAS).status_code == 200
    return [q["sql"] for q in queries.captured_queries]


def test_saga_changelist_queries_do_not_grow_with_rows(
    admin_client, place, django_assert_max_num_queries
):
    place()
    few = _changelist_queries(admin_client)
    for n in range(15):
        lifecycle.saga_start(name="purchase", context={"order_id": 1000 + n})

    with django_assert_max_num_queries(len(few)):
        many = _changelist_queries(admin_client)

    assert len(many) == len(few)
    rows = [sql for sql in many if sql.startswith('SELECT "sagas_saga"."id"')]
    assert len(rows) == 1  # the page's own select...
    assert '"context"' not in rows[0]  # ...without the context
