"""Hand-written SQL for the reads, row locks and writes that every saga step makes.

Django builds a queryset's SQL afresh each time it runs. For the few reads on a saga's
hot path that costs several times what the query costs the database (`make bench`
measured 4-6x the CPU of the same query run as text), so their selectors write the
query once, as text, and the rows become model instances the way Django's own
iterator makes them (``Model.from_db``, each field's ``from_db_value``). Two writes
take one round trip where the ORM takes several: rows updated together, and a row
inserted unless it exists. Everything else uses the ORM.
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


def update_many(*changes: tuple[models.Model, tuple[str, ...]]) -> None:
    """Save the ``fields`` of several rows in one statement: every UPDATE but the
    last runs as a data-modifying CTE of it. Never two changes of one row (a CTE's
    and its statement's updates of one row do not see each other)."""
    statements, params = [], []
    for instance, fields in changes:
        assignments, values = _prepared(instance, fields, add=False)
        statements.append(
            f"UPDATE {table_of(type(instance))} SET "
            + ", ".join(f"{column} = %s" for column in assignments)
            + f" WHERE {_pk(instance)} = %s"
        )
        params += [*values, instance.pk]
    *before, last = statements
    ctes = ", ".join(f"u{n} AS ({sql})" for n, sql in enumerate(before))
    with connection.cursor() as cursor:
        cursor.execute(f"WITH {ctes} {last}" if ctes else last, params)


def insert_once(instance: models.Model, *, unique: tuple[str, ...]) -> bool:
    """INSERT ``instance`` unless a row with the same ``unique`` fields (a unique
    constraint's) exists, in one round trip (``ON CONFLICT DO NOTHING``); True,
    with its pk set, if it went in. An idempotent step writes its row this way
    instead of looking for it first."""
    fields = [f.attname for f in instance._meta.concrete_fields if not f.primary_key]
    columns, values = _prepared(instance, fields, add=True)
    conflict = ", ".join(_column(instance, name) for name in unique)
    inserted = fetch(
        f"INSERT INTO {table_of(type(instance))} ({', '.join(columns)}) "
        f"VALUES ({', '.join(['%s'] * len(values))}) "
        f"ON CONFLICT ({conflict}) DO NOTHING RETURNING {_pk(instance)}",
        values,
    )
    if not inserted:
        return False
    instance.pk = inserted[0][0]
    instance._state.adding, instance._state.db = False, connection.alias
    return True


def _prepared(instance, fields, *, add: bool) -> tuple[list[str], list]:
    """Each field's column and its value as the database takes it (auto_now and
    auto_now_add fields: now)."""
    columns, values = [], []
    for name in fields:
        field = instance._meta.get_field(name)
        value = field.pre_save(instance, add=add)
        columns.append(connection.ops.quote_name(field.column))
        values.append(field.get_db_prep_save(value, connection))
    return columns, values


def _column(instance, name: str) -> str:
    return connection.ops.quote_name(instance._meta.get_field(name).column)


def _pk(instance) -> str:
    return connection.ops.quote_name(instance._meta.pk.column)


def first(rows: list):
    return rows[0] if rows else None
