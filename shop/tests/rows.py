"""Row counts of every table a request can write: a refused one must write none."""

from django.db.models import Model

from inventory.models import OutboxMessage as InventoryOutbox
from inventory.models import StockReservation
from orders.models import Order, OrderLine, Shipment
from orders.models import OutboxMessage as OrdersOutbox
from payments.models import OutboxMessage as PaymentsOutbox
from payments.models import Payment
from sagas.models import OutboxMessage as SagasOutbox
from sagas.models import Saga, SagaEvent, SagaStep

WRITTEN: tuple[type[Model], ...] = (
    Order,
    OrderLine,
    Shipment,
    Saga,
    SagaStep,
    SagaEvent,
    StockReservation,
    Payment,
    SagasOutbox,
    OrdersOutbox,
    InventoryOutbox,
    PaymentsOutbox,
)


def row_counts() -> dict[str, int]:
    """``{"orders.Order": n, ...}`` for each table in WRITTEN, outboxes included."""
    return {model._meta.label: model.objects.count() for model in WRITTEN}
