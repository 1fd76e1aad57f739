"""Choreographed sagas: apps react to each other's events, and each reaction records
its outcome on the saga as it commits (the tracker).

An app declares what it does on which event in its ``handlers.py``::

    @reacts_to("OrderPlaced", saga="purchase", step="charge_payment")
    def charge_payment(purchase: dict) -> None:
        payment_charge(...)          # writes PaymentCaptured in its transaction

``sagas.choreography.handlers`` runs each declaration as a Celery task on the app's
own queue, behind the app's inbox and the step's barrier.
"""

from sagas.choreography.handlers import reacts_to

__all__ = ["reacts_to"]
