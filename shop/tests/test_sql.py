"""The hot path's hand-written reads (shop.sql) against the ORM's: the same rows, every
field converted alike, and the row locks they promise, seen from a second session."""

import contextlib
import re
import threading
import time
from decimal import Decimal

import psycopg2
import pytest
from django.db import NotSupportedError, OperationalError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from inventory import selectors as inventory_selectors
from inventory.models import Product, ReservationStatus, StockReservation
from inventory.services import stock_reserve
from inventory.tests.factories import product_make
from orders import selectors as orders_selectors
from orders.models import Order, Shipment
from orders.services import order_place, shipment_create
from orders.tests.factories import order_make
from payments import selectors as payments_selectors
from payments.models import Account, PaymentMethod
from payments.services import payment_method_deactivate
from payments.tests.factories import customer_make, method_make
from sagas import selectors as saga_selectors
from sagas.failures import FailureKind, classify
from sagas.models import OutboxMessage, Saga, SagaStep
from shop import sql

pytestmark = pytest.mark.django_db(transaction=True)


def fields(instance) -> dict:
    return {
        f.attname: getattr(instance, f.attname) for f in type(instance)._meta.fields
    }


@pytest.fixture
def placed():
    product_make(sku="TEA", price="12.50", units=10)
    user, method = customer_make(balance="100.00")
    order = order_make(customer=user, payment_method_id=method.pk)
    return user, method, order


def test_the_step_paths_reads_give_what_the_orm_gives(placed):
    user, method, order = placed
    saga = Saga.objects.get(pk=order.saga_id)
    stock_reserve(order_ref=order.pk, lines=[("TEA", 2)])
    shipment_create(order_id=order.pk)

    with transaction.atomic():
        locked = saga_selectors.saga_lock(saga_id=saga.pk, statement_timeout=3)
        assert fields(locked) == fields(saga)  # its JSON context decoded, its times
        assert locked.context["total"] == "25.00"
        assert [fields(s) for s in saga_selectors.saga_steps(saga=saga)] == [
            fields(s) for s in SagaStep.objects.filter(saga=saga).order_by("index")
        ]
        account, why_not = payments_selectors.account_lock_to_pay(
            customer_id=user.pk, method_id=method.pk
        )
        assert (fields(account), why_not) == (
            fields(Account.objects.get(customer=user)),
            None,
        )
        assert account.balance == Decimal("100.00")
        [held] = inventory_selectors.reservations_lock(
            order_ref=order.pk, status=ReservationStatus.HELD
        )
        assert fields(held) == fields(StockReservation.objects.get())
        assert fields(held.product) == fields(Product.objects.get(sku="TEA"))
        assert fields(orders_selectors.order_lock(order_id=order.pk)) == fields(
            Order.objects.get()
        )
        assert fields(orders_selectors.shipment_of(order_id=order.pk)) == fields(
            Shipment.objects.get()
        )
    [claimed] = saga_selectors.outbox_claim(
        model=OutboxMessage, now=timezone.now(), limit=10
    )
    assert fields(claimed) == fields(OutboxMessage.objects.get())


def test_a_missing_order_is_refused_as_the_orm_would():
    with pytest.raises(Order.DoesNotExist):
        orders_selectors.order_lock(order_id=10**12)


def test_paying_says_why_a_method_cannot(placed):
    user, method, _ = placed
    _, others_method = customer_make(username="bob")
    payment_method_deactivate(customer_id=user.pk, method_id=method.pk)
    spare = method_make(customer_id=user.pk)

    def pay(customer, method_id):
        with transaction.atomic():
            account, why_not = payments_selectors.account_lock_to_pay(
                customer_id=customer.pk, method_id=method_id
            )
            return account and account.customer_id, why_not

    assert pay(user, spare.pk) == (user.pk, None)
    assert pay(user, method.pk) == (user.pk, "this payment method is inactive")
    assert pay(user, others_method.pk) == (user.pk, "not one of your payment methods")
    assert pay(user, 10**12) == (user.pk, "not one of your payment methods")
    nobody = type(user).objects.create(username="nobody")
    assert pay(nobody, spare.pk)[0] is None


def test_paying_locks_the_account_and_the_method(placed):
    user, method, _ = placed
    with transaction.atomic():
        payments_selectors.account_lock_to_pay(customer_id=user.pk, method_id=method.pk)
        assert locked_elsewhere(Account, Account.objects.get(customer=user).pk)
        # A deactivation waits for the payment: it cannot slip in between.
        assert locked_elsewhere(PaymentMethod, method.pk)


def test_settling_locks_the_reservations_and_their_products(placed):
    _, _, order = placed
    stock_reserve(order_ref=order.pk, lines=[("TEA", 2)])
    with transaction.atomic():
        [held] = inventory_selectors.reservations_lock(
            order_ref=order.pk, status=ReservationStatus.HELD
        )
        assert locked_elsewhere(StockReservation, held.pk)
        assert locked_elsewhere(Product, held.product_id)
    assert not locked_elsewhere(Product, held.product_id)


def locked_elsewhere(model, pk) -> bool:
    """Does another session find the row locked (FOR UPDATE NOWAIT refused)?"""
    params = connection.get_connection_params()
    other = psycopg2.connect(**params)
    with contextlib.closing(other), other.cursor() as cursor:
        try:
            cursor.execute(
                f"SELECT 1 FROM {model._meta.db_table} WHERE id = %s FOR UPDATE NOWAIT",
                [pk],
            )
        except psycopg2.errors.LockNotAvailable:
            return True
        finally:
            other.rollback()
    return False


def test_insert_once_writes_a_row_once_with_its_defaults_and_its_pk():
    event = OutboxMessage(topic="T", aggregate_id="1", payload={"a": [1, "é"]})

    assert sql.insert_once(event, unique=("message_id",)) is True

    stored = OutboxMessage.objects.get()
    assert event.pk == stored.pk
    assert fields(event) == fields(stored)  # JSON, UUID, auto_now_add alike
    again = OutboxMessage(topic="T", aggregate_id="1", message_id=event.message_id)
    assert sql.insert_once(again, unique=("message_id",)) is False
    assert again.pk is None and OutboxMessage.objects.count() == 1


def test_a_shipment_made_twice_is_made_once(placed):
    _, _, order = placed

    first = shipment_create(order_id=order.pk)
    second = shipment_create(order_id=order.pk)  # an earlier delivery made it

    assert second.pk == first.pk
    assert Shipment.objects.count() == 1


def test_rows_updated_together_in_one_statement(placed):
    _, _, order = placed
    saga = Saga.objects.get(pk=order.saga_id)
    first, second = SagaStep.objects.filter(saga=saga).order_by("index")[:2]
    first.status, first.attempts, second.status = "SUCCEEDED", 1, "RUNNING"
    saga.context = {**saga.context, "shipment_id": 7}

    with CaptureQueriesContext(connection) as ran:
        sql.update_many(
            (first, ("status", "attempts")),
            (second, ("status",)),
            (saga, ("context", "updated_at")),
        )

    assert len(sent(ran)) == 1
    assert [(s.status, s.attempts) for s in SagaStep.objects.filter(saga=saga)][:2] == [
        ("SUCCEEDED", 1),
        ("RUNNING", 0),
    ]
    saga_now = Saga.objects.get(pk=saga.pk)
    assert saga_now.context["shipment_id"] == 7
    assert saga_now.updated_at > saga.created_at


def sent(ran: CaptureQueriesContext) -> list[str]:
    """The messages sent while ``ran`` captured, each prepared statement's EXECUTE
    written out as its text, without the PREPAREs (once per statement and connection,
    not a round trip of the step path)."""
    names = sql._sessions[connection.connection].names
    texts = {name: text for text, name in names.items()}
    return [
        re.sub(r"EXECUTE (shop_\w+)", lambda m: texts[m.group(1)], q["sql"])
        for q in ran.captured_queries
        if not q["sql"].startswith("PREPARE")
    ]


def writes(call) -> list[str]:
    """The statements ``call`` sends but its reads, locks (SELECT) and transaction."""
    with CaptureQueriesContext(connection) as ran:
        call()
    return [
        text for text in sent(ran) if not text.startswith(("SELECT", "BEGIN", "COMMIT"))
    ]


def test_a_payment_and_the_balance_it_takes_are_written_in_one_statement(placed):
    from payments.models import Payment
    from payments.services import payment_charge, payment_refund

    user, method, order = placed
    charge = {"customer_id": user.pk, "method_id": method.pk, "amount": Decimal("30")}

    taken = []
    assert (
        len(writes(lambda: taken.append(payment_charge(order_ref=order.pk, **charge))))
        == 1
    )
    payment = Payment.objects.get()
    assert taken[0].pk == payment.pk
    assert (payment.order_ref, payment.amount, payment.status) == (
        order.pk,
        Decimal("30.00"),
        "CAPTURED",
    )
    assert payment.created_at is not None
    assert Account.objects.get(customer=user).balance == Decimal("70.00")

    assert len(writes(lambda: payment_refund(order_ref=order.pk))) == 1
    payment.refresh_from_db()
    assert payment.status == "REFUNDED" and payment.refunded_at is not None
    assert Account.objects.get(customer=user).balance == Decimal("100.00")


def test_stock_held_and_settled_in_one_statement_each(placed):
    from inventory.services import stock_commit

    _, _, order = placed
    product_make(sku="JAM", price="3.00", units=5)
    lines = [("TEA", 5), ("JAM", 1)]

    made = []
    assert (
        len(writes(lambda: made.extend(stock_reserve(order_ref=order.pk, lines=lines))))
        == 1
    )
    held = StockReservation.objects.filter(order_ref=order.pk).order_by("pk")
    assert [(r.pk, r.product_id) for r in made] == [(r.pk, r.product_id) for r in held]
    assert stock_reserve(order_ref=order.pk + 1, lines=[]) == []
    assert [(r.product.sku, r.quantity, r.status) for r in held] == [
        ("TEA", 5, ReservationStatus.HELD),
        ("JAM", 1, ReservationStatus.HELD),
    ]
    tea, jam = Product.objects.get(sku="TEA"), Product.objects.get(sku="JAM")
    assert (tea.available, tea.reserved, jam.available, jam.reserved) == (5, 5, 4, 1)

    assert len(writes(lambda: stock_commit(order_ref=order.pk))) == 1
    assert set(held.values_list("status", flat=True)) == {ReservationStatus.COMMITTED}
    tea, jam = Product.objects.get(sku="TEA"), Product.objects.get(sku="JAM")
    assert (tea.available, tea.reserved, tea.sold) == (5, 0, 5)
    assert (jam.available, jam.reserved, jam.sold) == (4, 0, 1)


def test_a_saga_and_its_steps_come_locked_in_one_round_trip(placed):
    _, _, order = placed
    saga = Saga.objects.get(pk=order.saga_id)

    with transaction.atomic(), CaptureQueriesContext(connection) as ran:
        locked, steps = saga_selectors.saga_lock_with_steps(
            saga_id=saga.pk, statement_timeout=3
        )
        assert len(sent(ran)) == 1  # the lock and the read, one message
        assert fields(locked) == fields(saga)
        assert [fields(s) for s in steps] == [
            fields(s) for s in SagaStep.objects.filter(saga=saga).order_by("index")
        ]
        assert locked_elsewhere(Saga, saga.pk)
    with transaction.atomic():
        assert saga_selectors.saga_lock_with_steps(saga_id=10**12) == (None, [])


def test_the_steps_read_are_those_the_lock_holder_before_committed(placed):
    """Whoever held the saga while this waited for it changed a step: the read after
    the lock sees the change (one statement that locked and joined would not)."""
    _, _, order = placed
    saga = Saga.objects.get(pk=order.saga_id)
    params = connection.get_connection_params()
    holder = psycopg2.connect(**params)
    with contextlib.closing(holder), holder.cursor() as cursor:
        cursor.execute("SELECT 1 FROM sagas_saga WHERE id = %s FOR UPDATE", [saga.pk])
        cursor.execute(
            "UPDATE sagas_sagastep SET status = 'SUCCEEDED', attempts = 1 "
            "WHERE saga_id = %s AND index = 0",
            [saga.pk],
        )
        cursor.execute(
            "UPDATE sagas_saga SET current_step = 1 WHERE id = %s", [saga.pk]
        )
        waited = []

        def commit_once_the_lock_waits():
            waited.append(wait_for_a_lock_wait(holder.get_backend_pid(), params))
            holder.commit()

        threading.Thread(target=commit_once_the_lock_waits).start()
        with transaction.atomic():
            locked, steps = saga_selectors.saga_lock_with_steps(saga_id=saga.pk)

    assert waited == [True]  # the read came after a wait for the lock
    assert locked.current_step == 1
    assert (steps[0].status, steps[0].attempts) == ("SUCCEEDED", 1)


def wait_for_a_lock_wait(holder_pid: int, params) -> bool:
    """Has a session come to wait for a lock that ``holder_pid`` holds (within 10 s)?"""
    watcher = psycopg2.connect(**params)
    watcher.autocommit = True
    with contextlib.closing(watcher), watcher.cursor() as cursor:
        for _ in range(1000):
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE %s = ANY(pg_blocking_pids(pid))",
                [holder_pid],
            )
            if cursor.fetchone()[0]:
                return True
            time.sleep(0.01)
    return False


def test_a_saga_whose_steps_are_gone_comes_with_none(placed):
    """For its caller to flag (the engine's check of the recorded steps), as a read
    of the steps alone would give them."""
    _, _, order = placed
    saga = Saga.objects.get(pk=order.saga_id)
    SagaStep.objects.filter(saga=saga).delete()

    with transaction.atomic():
        locked, steps = saga_selectors.saga_lock_with_steps(saga_id=saga.pk)

    assert (locked.pk, steps) == (saga.pk, [])


# PREPARED STATEMENTS -----------------------------------------------------------------

QUERY = "SELECT %s::int + 1, 'a%%b'"


@pytest.fixture
def session():
    """A new session: none of its statements prepared yet."""
    connection.close()


def prepared_on_the_server() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [statement for (statement,) in cursor.fetchall()]


def test_a_statement_is_prepared_once_then_run_by_name(session):
    with CaptureQueriesContext(connection) as ran:
        results = [sql.fetch(QUERY, [n]) for n in (1, 2)]

    assert results == [[(2, "a%b")], [(3, "a%b")]]
    prepare, *executes = [q["sql"] for q in ran.captured_queries]
    name = sql._sessions[connection.connection].names[QUERY]
    assert prepare == f"PREPARE {name} AS SELECT $1::int + 1, 'a%b'"
    assert executes == [f"EXECUTE {name}(1)", f"EXECUTE {name}(2)"]
    assert prepare in prepared_on_the_server()


def test_a_new_connection_prepares_its_statements_again(session):
    sql.fetch(QUERY, [1])
    connection.close()  # its prepared statements end with its session

    assert sql.fetch(QUERY, [5]) == [(6, "a%b")]
    assert len(prepared_on_the_server()) == 1


def test_a_statement_prepared_in_a_transaction_rolled_back_stays_prepared(session):
    with contextlib.suppress(ZeroDivisionError), transaction.atomic():
        sql.fetch(QUERY, [1])
        raise ZeroDivisionError  # PREPARE is not undone: preparing again would fail

    assert sql.fetch(QUERY, [2]) == [(3, "a%b")]


def test_statements_go_as_text_with_preparing_off(settings, session):
    settings.SQL_PREPARED_STATEMENTS = False  # behind PgBouncer in transaction mode

    with CaptureQueriesContext(connection) as ran:
        assert sql.fetch(QUERY, [1]) == [(2, "a%b")]

    assert [q["sql"] for q in ran.captured_queries] == ["SELECT 1::int + 1, 'a%b'"]
    assert prepared_on_the_server() == []


def test_a_connection_prepares_at_most_max_prepared(monkeypatch, session):
    monkeypatch.setattr(sql, "MAX_PREPARED", 1)
    sql.fetch(QUERY, [1])

    with CaptureQueriesContext(connection) as ran:
        assert sql.fetch("SELECT %s::int * 2", [4]) == [(8,)]

    assert [q["sql"] for q in ran.captured_queries] == ["SELECT 4::int * 2"]
    assert len(prepared_on_the_server()) == 1


def ran_as(ran: CaptureQueriesContext, table: str) -> list[str]:
    """How each message that wrote to ``table`` went: "prepared" or "text"."""
    names = sql._sessions[connection.connection].names
    texts = {name: text for text, name in names.items()}
    how = []
    for query in (q["sql"] for q in ran.captured_queries):
        if query.startswith("PREPARE"):
            continue  # once per connection: the EXECUTE that follows is the write
        named = re.findall(r"EXECUTE (shop_\w+)", query)
        written = [texts[name] for name in named] if named else [query]
        if any(f'INTO "{table}"' in t or f'UPDATE "{table}"' in t for t in written):
            how.append("prepared" if named else "text")
    return how


def test_statements_whose_shape_grows_with_an_orders_lines_go_as_text(placed):
    """Each size would be a statement of its own, held by every connection: only a
    one-line order's lines, reservation and settlement are prepared."""
    from inventory.services import stock_commit

    user, method, _ = placed
    product_make(sku="JAM", price="3.00", units=5)

    def place_and_hold(lines):
        with CaptureQueriesContext(connection) as ran:
            order, _ = order_place(
                customer=user,
                items=[{"sku": sku, "quantity": n} for sku, n in lines],
                payment_method_id=method.pk,
            )
            stock_reserve(order_ref=order.pk, lines=lines)
            stock_commit(order_ref=order.pk)
        return ran

    one, two = place_and_hold([("TEA", 1)]), place_and_hold([("TEA", 1), ("JAM", 1)])

    assert ran_as(one, "orders_orderline") == ["prepared"]
    assert ran_as(one, "inventory_stockreservation") == ["prepared", "prepared"]
    assert ran_as(two, "orders_orderline") == ["text"]
    assert ran_as(two, "inventory_stockreservation") == ["text", "text"]


def test_a_prepare_the_server_kept_unrecorded_is_not_asked_for_again(
    monkeypatch, session
):
    """A time limit that strikes as the PREPARE's answer comes in: the server has the
    statement, this process never recorded it. The next use prepares it afresh."""
    record = sql._sessions.setdefault
    struck = []

    def strike_after_the_prepare(connection_, default):
        if not struck:
            struck.append(True)
            return sql._Session(names=_Striking())
        return record(connection_, default)

    monkeypatch.setattr(sql._sessions, "setdefault", strike_after_the_prepare)
    with pytest.raises(TimeoutError), transaction.atomic():
        sql.fetch(QUERY, [1])
    assert len(prepared_on_the_server()) == 1  # kept, not recorded

    assert sql.fetch(QUERY, [2]) == [(3, "a%b")]


class _Striking(dict):
    """A connection's record of names that raises as a name would be recorded."""

    def __setitem__(self, key, value):
        raise TimeoutError("the step's soft time limit")


def test_statements_the_server_let_go_are_prepared_afresh(session):
    """A pooler's DISCARD ALL, say: the next run fails once, the one after prepares
    again, and nothing is left behind on the server."""
    sql.fetch(QUERY, [1])
    sql.fetch("SELECT %s::int * 2", [2])
    with connection.cursor() as cursor:
        cursor.execute("DEALLOCATE ALL")

    with pytest.raises(OperationalError) as refused:
        sql.fetch(QUERY, [1])
    assert refused.value.__cause__.pgcode == "26000"
    assert classify(refused.value) is FailureKind.TRANSIENT

    assert sql.fetch(QUERY, [2]) == [(3, "a%b")]
    assert len(prepared_on_the_server()) == 1


def test_a_statement_whose_rows_changed_shape_is_prepared_afresh(session):
    """A migration changed a column's type: the server refuses the statement
    prepared before it ("cached plan must not change result type") once, then the
    connection prepares it again."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE shop_sql_shape (id int, name varchar(10))")
        cursor.execute("INSERT INTO shop_sql_shape VALUES (1, 'tea')")
    read = "SELECT name FROM shop_sql_shape WHERE id = %s"
    try:
        assert sql.fetch(read, [1]) == [("tea",)]
        with connection.cursor() as cursor:
            cursor.execute(
                "ALTER TABLE shop_sql_shape ALTER COLUMN name TYPE varchar(20)"
            )

        with pytest.raises(NotSupportedError, match="cached plan") as refused:
            sql.fetch(read, [1])
        assert classify(refused.value) is FailureKind.TRANSIENT  # a step retries
        assert sql.fetch(read, [1]) == [("tea",)]
        # Every statement the connection had was let go, the new one prepared.
        assert len(prepared_on_the_server()) == 1
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE shop_sql_shape")


def test_a_percent_sign_that_is_no_placeholder_is_refused():
    """psycopg2 refuses it in a statement sent as text: a statement must not work
    only when it is prepared."""
    with pytest.raises(ValueError, match="neither"):
        sql.fetch("SELECT 1 WHERE 'ab' LIKE 'a%'", [])


def test_a_changed_result_type_is_known_in_any_language():
    """The server translates its words (lc_messages); where it raised them, not."""

    class Refusal(Exception):
        pgcode = "0A000"

        class diag:  # psycopg2 names it so
            source_function = "RevalidateCachedQuery"

        def __str__(self):
            return "gecachter Plan darf den Ergebnistyp nicht ändern"

    error = NotSupportedError("gecachter Plan darf den Ergebnistyp nicht ändern")
    error.__cause__ = Refusal()

    assert sql.is_stale_prepared(error)
    assert classify(error) is FailureKind.TRANSIENT
