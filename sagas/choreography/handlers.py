"""What an app does on another app's event, and how each such reaction is run.

An app declares its reactions in ``<app>/handlers.py`` with ``reacts_to``. Each runs
in one transaction with the app's inbox row (a second copy of the message does
nothing) and the step's barrier (sagas.barriers), writes its outcome event to the
app's outbox in that same transaction, and records what the event means for its
saga's records (sagas.choreography.tracker) under the saga's row lock (a refused
step's work rolls back, and its failure is then recorded so, in a second one):

    act   the step's work; a BusinessError becomes the step's failure event (the
          work rolled back with its transaction, the message and the failure then
          recorded in one of their own), and if the work wrote no success event,
          the step's success event is written
    undo  undo the step's work, then announce it undone; a step whose work never ran
          announces it all the same, and is fenced so that it never will run. On the
          step's own failure event it only fences (the failure announces itself)
    end   end an undone saga (the order cancelled), once

The failure's words travel in the messages' headers (``reason``), so the app that
ends the saga can say why, whichever app refused.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from django.apps import apps
from django.db import transaction
from django.utils import timezone

from sagas import barriers, bookkeeping, registry, selectors, telemetry
from sagas.choreography import tracker
from sagas.definitions import Mode, Phase
from sagas.definitions.choreography import END, Choreography, Role
from sagas.exceptions import BusinessError
from sagas.failures import PUBLIC_REASONS, FailureKind, failure_of
from sagas.messaging.correlation import Emitted, collecting, correlated
from sagas.messaging.inbox import inbox_accept
from sagas.messaging.outbox import outbox_emit
from sagas.models import ENDED_STATUSES, BarrierOp, Saga

GENERIC_REASON = PUBLIC_REASONS[FailureKind.UNEXPECTED]


@dataclass(frozen=True)
class Handler:
    app: str  # the app that reacts, and the queue its reactions run on
    function: Callable
    topics: tuple[str, ...]
    saga: str
    step: str  # a step of the saga, or END
    role: Role

    @property
    def name(self) -> str:
        """Its task's name, and its name in the app's inbox: ``payments.charge``."""
        return f"{self.app}.{self.function.__name__}"


_handlers: list[Handler] = []


def reacts_to(*topics: str, saga: str, step: str, undo: bool = False):
    """Declare that the decorated function is its app's reaction to ``topics`` for
    ``step`` of the choreographed saga ``saga`` (``undo``: it undoes that step;
    ``step=END``: it ends the undone saga, and is called with the reason too)."""

    def declare(function: Callable) -> Callable:
        role = Role.END if step == END else (Role.UNDO if undo else Role.ACT)
        app = apps.get_containing_app_config(function.__module__).label
        _handlers.append(Handler(app, function, tuple(topics), saga, step, role))
        return function

    return declare


def declared(*, saga: str | None = None) -> list[Handler]:
    return [h for h in _handlers if saga is None or h.saga == saga]


def handle(handler: Handler, message: dict) -> None:
    """Run one reaction to one message, exactly once per message and step phase."""
    definition = registry.definition(handler.saga, Mode.CHOREOGRAPHY)
    app = apps.get_app_config(handler.app)
    headers = message.get("headers", {})
    try:
        try:
            with transaction.atomic(durable=True):
                _react(handler, definition, app, headers, message)
        except _Refused as refused:
            # Its work was refused, and rolled back with the whole transaction: no
            # savepoint around the work, two statements for every reaction where a
            # refusal is the exception. The message, the step's try and its failure
            # are recorded in a transaction of their own, as if it came now: a copy
            # handled, or a fence set, meanwhile is found as it would be then.
            with transaction.atomic(durable=True):
                _react(handler, definition, app, headers, message, refused)
    except RefusedAfterPivot as refusal:
        # Rolled back, inbox row and barrier too: the reaction is retried (and then
        # its event sent again by the sweep) until the step gets done; an operator
        # sees why meanwhile.
        _needs_attention(refusal.saga.pk, str(refusal))
        raise


class _Refused(Exception):
    """The step's work, begun at ``started``, was refused (a BusinessError): its
    transaction rolls back."""

    def __init__(self, refusal: BusinessError, started: datetime) -> None:
        super().__init__(str(refusal))
        self.refusal, self.started = refusal, started


class RefusedAfterPivot(Exception):
    """A step past the point of no return was refused: there is no failure to
    announce, only to try again."""

    def __init__(self, saga: Saga, why: str) -> None:
        super().__init__(why)
        self.saga = saga


def _react(
    handler: Handler,
    definition,
    app,
    headers: dict,
    message: dict,
    refused: _Refused | None = None,
) -> None:
    """``refused``: the step's work was refused in an earlier transaction; its
    failure is announced instead of running the work again, timed from then."""
    started = refused.started if refused else timezone.now()
    accepted = inbox_accept(
        app.get_model("InboxMessage"),
        consumer=handler.name,
        message_id=message["message_id"],
        topic=message["topic"],
    )
    # Locked for update: the reaction records its outcome on the saga. The recovery
    # sweep (FOR UPDATE SKIP LOCKED) passes over a saga while one of its reactions
    # runs, so it never takes work in progress for lost (but between a refused
    # work's rollback and its failure's recording, where what the sweep or an
    # operator did is found as a message that came later would find it). Its steps
    # come in the same round trip; the reaction's work does not change them, its
    # tracking below does.
    saga, steps = selectors.saga_lock_with_steps(saga_id=headers.get("saga_id"))
    if (
        not accepted
        or saga is None
        or (saga.name, saga.mode) != (handler.saga, Mode.CHOREOGRAPHY)
        or saga.status in ENDED_STATUSES
    ):
        # A copy of a message already handled, of no saga of ours (another saga's,
        # or one not choreographed: it must not be moved by reactions), or one that
        # came after its saga ended (and maybe after its barriers were cleaned):
        # there is nothing left to do.
        return
    refusal = refused.refusal if refused else None
    reaction = _Reaction(handler, definition, saga, message, app, started, refusal)
    with (
        correlated(
            **registry.headers_of(saga, step=handler.step),
            reason=headers.get("reason"),
        ),
        collecting() as reaction.emitted,
    ):
        ROLES[handler.role](reaction)
    if reaction.emitted:
        tracker.saga_track(
            saga,
            steps,
            definition,
            reaction.emitted,
            at=timezone.now(),
            started=started,
        )


@dataclass
class _Reaction:
    handler: Handler
    definition: Choreography
    saga: Saga
    message: dict
    app: object
    started: datetime
    refusal: BusinessError | None = None  # its work was refused, and rolled back
    emitted: list[Emitted] | None = None

    @property
    def context(self) -> dict:
        return {**self.saga.context, **self.message.get("payload", {})}

    @property
    def step(self):
        return self.definition.steps[self.definition.index_of(self.handler.step)]

    def passage(self, branch: str, op: str) -> barriers.Passage:
        return barriers.barrier_pass(saga_id=self.saga.pk, branch=branch, op=op)

    def announce(self, topic: str, **payload) -> None:
        """Write ``topic`` to the app's outbox, unless the work already did."""
        if any(event.topic == topic for event in self.emitted):
            return
        outbox_emit(
            self.app.get_model("OutboxMessage"),
            topic=topic,
            aggregate_id=self.message.get("aggregate_id", self.saga.pk),
            payload=payload,
        )


def _act(reaction: _Reaction) -> None:
    step = reaction.step
    if reaction.passage(step.name, BarrierOp.TRY) is not barriers.Passage.DUE:
        return  # done before, or fenced: it timed out or was cancelled first
    if reaction.refusal is not None:
        reason = str(reaction.refusal)[:2000]
        failure = failure_of(reaction.refusal, unit_name=reaction.handler.name)
        telemetry.step_failed(reaction.saga, step.name, Phase.ACTION, failure)
        with correlated(reason=reason):
            reaction.announce(step.fails, reason=reason)
        return
    try:
        reaction.handler.function(reaction.context)
    except BusinessError as refusal:
        if step.fails is None:  # after the pivot there is no going back
            reason = str(refusal)[:2000]
            raise RefusedAfterPivot(
                reaction.saga, f"{step.name} was refused: {reason}"
            ) from refusal
        # Undoes whatever the work wrote; handle() records the refusal afresh.
        raise _Refused(refusal, reaction.started) from refusal
    reaction.announce(step.succeeds)


def _undo(reaction: _Reaction) -> None:
    step = reaction.step
    fence = reaction.message["topic"] == step.fails  # its own failure
    passage = reaction.passage(step.name, BarrierOp.CANCEL)
    if passage is barriers.Passage.DONE:
        return  # undone before
    if passage is barriers.Passage.DUE:
        reaction.handler.function(reaction.context)
    if not fence:  # the failure event itself carries the undoing on
        reaction.announce(step.undone, nothing=passage is not barriers.Passage.DUE)


def _end(reaction: _Reaction) -> None:
    passage = reaction.passage(END, BarrierOp.TRY)
    if passage is not barriers.Passage.DUE:
        return
    reason = reaction.message.get("headers", {}).get("reason") or GENERIC_REASON
    reaction.handler.function(reaction.context, reason)
    reaction.announce(reaction.definition.ends_undone_with)


ROLES = {Role.ACT: _act, Role.UNDO: _undo, Role.END: _end}


def _needs_attention(saga_id: int, why: str) -> None:
    with transaction.atomic():
        saga = selectors.saga_lock(saga_id=saga_id)
        if saga is not None:
            bookkeeping.flag(saga, why)
            bookkeeping.save(saga, "attention")
