"""Template filters of the saga admin's pages: times to the millisecond, in UTC."""

from django import template
from django.utils.html import format_html

from sagas import history

register = template.Library()


@register.filter
def instant(moment) -> str:
    """A <time> to the millisecond, its date and clock apart so a cell may wrap."""
    if moment is None:
        return "-"
    date, clock = history.instant(moment).split(" ")
    return format_html(
        '<time datetime="{}"><span class="date">{}</span> '
        '<span class="clock">{}</span></time>',
        moment.isoformat(),
        date,
        clock,
    )


@register.filter
def duration(delta) -> str:
    return history.duration(delta)
