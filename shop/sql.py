"""Hand-written SQL for the reads and row locks that every saga step makes.

Django builds a queryset's SQL afresh each time it runs. For the few reads on a saga's
hot path that costs several times what the query costs the database (`make bench`
measured 4-6x the CPU of the same query run as text), so their selectors write the
query once, as text, and the rows become model instances the way Django's own
iterator makes them (``Model.from_db``, each field's ``from_db_value``). Everything
else uses the ORM.
"""

from functools import cache

from django.db import connection, models


@cache
def columns(model: type[models.Model]) -> str:
    """The model's columns in field order, qualified by its table, as a SELECT list."""
    table = table_of(model)
    return ", ".join(
        f"{table}.{connection.ops.quote_name(f.column)}"
        for f in model._meta.concrete_fields
    )


@cache
def table_of(model: type[models.Model]) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def select(model: type[models.Model], where: str, params, *, tail: str = "") -> list:
    """``SELECT <model's columns> FROM <its table> WHERE <where> <tail>`` as model
    instances; ``tail`` orders, limits or locks (``FOR UPDATE``)."""
    sql = f"SELECT {columns(model)} FROM {table_of(model)} WHERE {where} {tail}"
    return instances(model, sql, params)


def instances(model: type[models.Model], sql: str, params) -> list:
    """The rows of ``sql``, which selects ``columns(model)`` first, as instances."""
    return [instance(model, row) for row in fetch(sql, params)]


def fetch(sql: str, params) -> list[tuple]:
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def instance(model: type[models.Model], row, start: int = 0) -> models.Model:
    """The model's instance from ``row``, its ``columns(model)`` from ``start`` on."""
    values = list(row[start : start + width(model)])
    for index, from_db in _converters(model):
        if values[index] is not None:
            values[index] = from_db(values[index], None, connection)
    return model.from_db(connection.alias, None, values)


def width(model: type[models.Model]) -> int:
    return len(model._meta.concrete_fields)


@cache
def _converters(model: type[models.Model]) -> tuple:
    """What Django applies to a column as it is read (a JSON field decodes its text),
    by column position."""
    return tuple(
        (index, field.from_db_value)
        for index, field in enumerate(model._meta.concrete_fields)
        if hasattr(field, "from_db_value")
    )


def first(rows: list):
    return rows[0] if rows else None
