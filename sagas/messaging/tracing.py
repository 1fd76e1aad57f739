"""A saga's traced headers across Celery (sagas.messaging.correlation): sent with
every task message, current around every task a worker runs.

- Publishing: a task message sent inside a saga's context (a relayed outbox row, a
  chain's next link, a failure sent to be recorded, a retry) carries its traced
  headers (saga_id, mode, step, the subject such as order_id) as message headers,
  unless the sender set them itself.
- Running: a worker makes a message's headers current while it takes the message
  (Celery logs its "received" line then, before any signal) and while the task runs
  (task_prerun to task_postrun), with the step the task works on (its ``saga_step``),
  so every line logged meanwhile and every message sent carries them. A task whose
  message has none (sent where no saga was at work) falls back to a ``saga_id``
  keyword argument.
- OpenTelemetry, when installed: the current span gets them as attributes
  (``saga.id``, ``saga.mode``, ``saga.step``, ``saga.order_id``).
"""

from collections import OrderedDict

from celery import bootsteps
from celery.signals import before_task_publish, task_postrun, task_prerun

from sagas.messaging import correlation

try:  # optional: see the README, "Metrics, logs and tracing"
    from opentelemetry import trace as otel_trace
except ImportError:  # pragma: no cover (not installed here)
    otel_trace = None

# What the worker's main process took lately, by task id: lines it logs about a task
# after taking it (a time limit, a lost process) carry them too.
SEEN_KEPT = 10_000
_seen: OrderedDict[str, dict] = OrderedDict()
_running: dict[str, object] = {}  # task id -> the token that restores the context


@before_task_publish.connect
def add_saga_headers(headers: dict | None = None, **kwargs) -> None:
    if headers is None:
        return
    traced = correlation.traced()
    for key, value in traced.items():
        # Not the step at work here: the message is for another (a chain's next
        # link, a reaction), which its worker names when it takes it (saga_step).
        if key != "step":
            headers.setdefault(key, value)
    annotate_span(traced)


def headers_of(task, headers: dict, kwargs: dict | None = None) -> dict:
    """What a task message says about the saga at work, and the task's own step."""
    found = correlation.traced(headers)
    if "saga_id" not in found and kwargs and kwargs.get("saga_id") is not None:
        found["saga_id"] = kwargs["saga_id"]
    step = getattr(task, "saga_step", None)
    if step is not None and found:
        found["step"] = step
    return found


@task_prerun.connect
def bind_task_headers(task_id=None, task=None, kwargs=None, **_) -> None:
    found = headers_of(task, vars(task.request), kwargs)
    _running[task_id] = correlation.bind(found)
    annotate_span(found)


@task_postrun.connect
def unbind_task_headers(task_id=None, **_) -> None:
    token = _running.pop(task_id, None)
    if token is not None:
        correlation.unbind(token)


def seen(task_id: str) -> dict | None:
    """The headers of a message this worker took lately, by its task id."""
    return _seen.get(task_id)


class BindHeadersOnReceipt(bootsteps.StartStopStep):
    """Each task's strategy (what takes its messages in the worker's main process)
    runs with the message's headers current, so Celery's "received" line carries
    them. Started again after every (re)connection, after Celery's own Tasks step
    has made the strategies afresh."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def start(self, c) -> None:
        for name, strategy in list(c.strategies.items()):
            c.strategies[name] = _binding(strategy, c.app.tasks.get(name))


def _binding(strategy, task):
    def take(message, *args, **kwargs):
        headers = message.headers or {}
        found = headers_of(task, headers)
        if found and headers.get("id"):
            _seen[headers["id"]] = found
            while len(_seen) > SEEN_KEPT:
                _seen.popitem(last=False)
        token = correlation.bind(found)
        try:
            return strategy(message, *args, **kwargs)
        finally:
            correlation.unbind(token)

    return take


def annotate_span(headers: dict) -> None:
    """Put the saga's headers on the current OpenTelemetry span, if any."""
    if otel_trace is None or not headers:
        return
    span = otel_trace.get_current_span()
    if span.is_recording():
        span.set_attributes(
            {
                "saga.id" if key == "saga_id" else f"saga.{key}": value
                for key, value in headers.items()
            }
        )
