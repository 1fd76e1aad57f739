"""Template filters of the saga admin's pages: times to the millisecond, in UTC."""

from django import template

from sagas import history
from sagas.admin.page import instant_html

register = template.Library()


@register.filter
def instant(moment) -> str:
    return instant_html(moment)


@register.filter
def duration(delta) -> str:
    return history.duration(delta)
