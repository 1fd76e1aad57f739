"""Links from a saga's page: to what the saga is about, and to its tasks in Flower.

The engine knows nothing of orders. The app that owns a process registers, for the
sagas of its name, what they are about: the key of the subject's id in the saga's
context, the admin page that shows the subject, and how to find a subject's sagas
(the saga list's search). ``orders/admin.py`` registers the purchase's order.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote

from django.conf import settings
from django.urls import NoReverseMatch, reverse
from django.utils.html import format_html

from sagas.models import Saga


@dataclass(frozen=True)
class Subject:
    label: str  # "order"
    context_key: str  # "order_id"
    url_name: str  # "admin:orders_order_change"
    sagas_of: Callable[[int], Iterable[int]]  # a subject's id -> its sagas' ids


_subjects: dict[str, Subject] = {}


def register_subject(
    saga_name: str,
    *,
    label: str,
    context_key: str,
    url_name: str,
    sagas_of: Callable[[int], Iterable[int]],
) -> None:
    """Say what the sagas named ``saga_name`` are about (one subject per name)."""
    _subjects[saga_name] = Subject(label, context_key, url_name, sagas_of)


def subject_link(saga: Saga) -> str:
    """A link to the saga's subject's admin page ("order 42"), or "-"."""
    subject = _subjects.get(saga.name)
    if subject is None:
        return "-"
    subject_id = saga.context.get(subject.context_key)
    if not isinstance(subject_id, int) or isinstance(subject_id, bool):
        return "-"
    try:
        url = reverse(subject.url_name, args=[subject_id])
    except NoReverseMatch:
        return f"{subject.label} {subject_id}"
    return format_html('<a href="{}">{} {}</a>', url, subject.label, subject_id)


def subject_labels() -> list[str]:
    return sorted({subject.label for subject in _subjects.values()})


def sagas_of_subjects(subject_id: int) -> set[int]:
    """The sagas of every registered subject with this id (an order 42's)."""
    found: set[int] = set()
    for subject in _subjects.values():
        found.update(subject.sagas_of(subject_id))
    return found


def flower_task_url(task_id: str) -> str:
    """Flower's page of a task, or "" without a task or a FLOWER_URL."""
    base = getattr(settings, "FLOWER_URL", "")
    if not task_id or not base:
        return ""
    return f"{base.rstrip('/')}/task/{quote(task_id, safe='')}"


def flower_task_link(task_id: str) -> str:
    url = flower_task_url(task_id)
    if not url:
        return ""
    return format_html(
        '<a class="flower-task" href="{}" title="task {} in Flower" target="_blank" '
        'rel="noopener">task&nbsp;&#8599;</a>',
        url,
        task_id,
    )
