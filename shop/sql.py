"""Hand-written SQL for the reads, row locks and writes that every saga step makes.

Django builds a queryset's SQL afresh each time it runs. For the few reads on a saga's
hot path that costs several times what the query costs the database (`make bench`
measured 4-6x the CPU of the same query run as text), so their selectors write the
query once, as text, and the rows become model instances the way Django's own
iterator makes them (``Model.from_db``, each field's ``from_db_value``). The step
path's writes are written the same way, and the writes of one change go to the
database together, in one round trip where the ORM takes one per write: a payment
and the balance it takes, a reservation and the stock it holds, a step and its saga.
Each statement is prepared on the server once per connection (``PREPARE``) and run by
name after that (``EXECUTE``), so PostgreSQL parses and plans it once, not at every
step: that was about half of the server's time for the saga lock and its read.
Everything else uses the ORM.
"""

import hashlib
import itertools
import re
import weakref
from dataclasses import dataclass, field
from functools import cache

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connection, connections, models


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
    conn = _database()
    return [instance(model, row, conn=conn) for row in fetch(sql, params)]


def fetch(sql: str, params, *, after: "Statement | None" = None) -> list[tuple]:
    """The rows of ``sql``; sent in one message after the statement ``after``, if
    given (whose rows are not returned)."""
    with connection.cursor() as cursor:
        execute(cursor, *((after,) if after else ()), (sql, params))
        return cursor.fetchall()


def instance(
    model: type[models.Model], row, start: int = 0, *, conn=None
) -> models.Model:
    """The model's instance from ``row``, its ``columns(model)`` from ``start`` on
    (``conn``: the connection, looked up once by a caller that makes many)."""
    conn = conn or _database()
    values = list(row[start : start + width(model)])
    for index, from_db in _converters(model):
        if values[index] is not None:
            values[index] = from_db(values[index], None, conn)
    return model.from_db(DEFAULT_DB_ALIAS, None, values)


def width(model: type[models.Model]) -> int:
    return len(model._meta.concrete_fields)


def _database():
    """The default connection itself, for a statement's many uses of it (each
    column's value, each row's): ``django.db.connection`` looks it up again (a
    thread- and task-local lookup) on every use."""
    return connections[DEFAULT_DB_ALIAS]


@cache
def _converters(model: type[models.Model]) -> tuple:
    """What Django applies to a column as it is read (a JSON field decodes its text),
    by column position."""
    return tuple(
        (index, field.from_db_value)
        for index, field in enumerate(model._meta.concrete_fields)
        if hasattr(field, "from_db_value")
    )


# A statement as text and its parameters, to be run alone or with others (together).
Statement = tuple[str, list]


def together(*statements: Statement, prepare: bool = True) -> list[tuple]:
    """Run ``statements`` in one round trip: every one but the last as a
    data-modifying CTE of the last; return the last one's rows (its RETURNING).

    Never two changes of one row: the CTEs and the last statement all see the rows
    as they were before the statement, not one another's changes.
    """
    *before, (last, params) = statements
    ctes = ", ".join(f"u{n} AS ({text})" for n, (text, _) in enumerate(before))
    values = [value for _, first in before for value in first] + list(params)
    with connection.cursor() as cursor:
        execute(
            cursor, (f"WITH {ctes} {last}" if ctes else last, values), prepare=prepare
        )
        return cursor.fetchall() if cursor.description else []


def update_many(*changes: tuple[models.Model, tuple[str, ...]]) -> None:
    """Save the ``fields`` of several rows in one statement (``together``)."""
    together(*(update_of(instance, fields) for instance, fields in changes))


def update_of(instance: models.Model, fields: tuple[str, ...]) -> Statement:
    """The UPDATE that saves ``fields`` of ``instance`` (auto_now fields: now)."""
    text, saved = _update(type(instance), tuple(fields))
    return text, [*_values(instance, saved, _database(), add=False), instance.pk]


@cache
def _update(model: type[models.Model], fields: tuple[str, ...]) -> tuple[str, tuple]:
    """The text of the model's UPDATE of ``fields`` by pk, and those fields."""
    saved = _fields(model, fields)
    assignments = ", ".join(f"{column} = %s" for _, column in saved)
    where = _quoted(model, model._meta.pk.name)
    return f"UPDATE {table_of(model)} SET {assignments} WHERE {where} = %s", saved


def increment(model: type[models.Model], pk, **deltas) -> Statement:
    """The UPDATE that adds ``deltas`` to columns of one row (a negative one takes
    away), as ``update(column=F(column) + delta)`` would, without building a query."""
    columns = [_quoted(model, name) for name in deltas]
    return (
        f"UPDATE {table_of(model)} SET "
        + ", ".join(f"{column} = {column} + %s" for column in columns)
        + f" WHERE {_quoted(model, model._meta.pk.name)} = %s",
        [*deltas.values(), pk],
    )


def insert(
    *instances: models.Model,
    before: tuple[Statement, ...] = (),
    prepare: bool = True,
) -> None:
    """INSERT ``instances`` of one model in one statement, each one's pk set from the
    database, with the statements ``before`` it in the same round trip
    (``together``); with no instances, only those. ``prepare``: see ``execute``."""
    if not instances:
        if before:
            together(*before, prepare=prepare)
        return
    rows = together(*before, _insert_of(*instances), prepare=prepare)
    # RETURNING gives the rows in the order of the VALUES list (as bulk_create takes).
    for instance, (pk,) in zip(instances, rows, strict=True):
        _inserted(instance, pk)


def insert_once(instance: models.Model, *, unique: tuple[str, ...]) -> bool:
    """INSERT ``instance`` unless a row with the same ``unique`` fields (a unique
    constraint's) exists, in one round trip (``ON CONFLICT DO NOTHING``); True,
    with its pk set, if it went in. An idempotent step writes its row this way
    instead of looking for it first."""
    conflict = ", ".join(_quoted(type(instance), name) for name in unique)
    inserted = together(
        _insert_of(instance, on_conflict=f"ON CONFLICT ({conflict}) DO NOTHING")
    )
    if not inserted:
        return False
    _inserted(instance, inserted[0][0])
    return True


def _insert_of(*instances: models.Model, on_conflict: str = "") -> Statement:
    model = type(instances[0])
    head, row, saved = _insert(model)
    values, conn = [], _database()
    for instance in instances:
        values += _values(instance, saved, conn, add=True)
    rows = ", ".join([row] * len(instances))
    returning = _quoted(model, model._meta.pk.name)
    return f"{head} VALUES {rows} {on_conflict} RETURNING {returning}", values


@cache
def _insert(model: type[models.Model]) -> tuple[str, str, tuple]:
    """The head of the model's INSERT, the placeholders of one row, its fields."""
    saved = _fields(
        model,
        tuple(f.attname for f in model._meta.concrete_fields if not f.primary_key),
    )
    head = f"INSERT INTO {table_of(model)} ({', '.join(c for _, c in saved)})"
    return head, f"({', '.join(['%s'] * len(saved))})", saved


@cache
def _fields(model: type[models.Model], names: tuple[str, ...]) -> tuple:
    """Each named field with its column, quoted."""
    return tuple(
        (field, connection.ops.quote_name(field.column))
        for field in map(model._meta.get_field, names)
    )


def _values(instance: models.Model, saved: tuple, conn, *, add: bool) -> list:
    """Each field's value as the database takes it (auto_now and auto_now_add
    fields: now)."""
    return [
        field.get_db_prep_save(field.pre_save(instance, add), conn)
        for field, _ in saved
    ]


def _inserted(instance: models.Model, pk) -> models.Model:
    instance.pk = pk
    instance._state.adding, instance._state.db = False, DEFAULT_DB_ALIAS
    return instance


@cache
def _quoted(model: type[models.Model], name: str) -> str:
    return connection.ops.quote_name(model._meta.get_field(name).column)


def first(rows: list):
    return rows[0] if rows else None


# PREPARED STATEMENTS -----------------------------------------------------------------

# A connection keeps at most this many; past it a statement is sent as text. Only
# statements of a fixed shape are prepared (one whose shape grows with an order's
# lines is sent as text: see ``prepare``), a few dozen on the hot path.
MAX_PREPARED = 256


@dataclass
class _Session:
    """What one open connection has prepared, by statement text."""

    names: dict[str, str] = field(default_factory=dict)
    # Its statements no longer stand: all are let go before the next PREPARE.
    stale: bool = False


# Keyed by the driver's own connection, so a reconnection starts empty: a session's
# statements die with it.
_sessions: "weakref.WeakKeyDictionary[object, _Session]" = weakref.WeakKeyDictionary()
# A name is the text's hash and a number never used before in this process: one the
# server kept that this process did not record (a time limit struck as the PREPARE
# answered) is never asked for again, and a name that meets another process's
# statement (a pooler sharing server sessions) runs the same text or fails.
_serial = itertools.count(1)
_PLACEHOLDER = re.compile(r"%(.?)")


def execute(cursor, *statements: Statement, prepare: bool = True) -> None:
    """Send ``statements`` to the server in one message (the rows are the last one's),
    each by the name it was prepared under on this connection; as text if not
    ``prepare``: a statement whose shape grows with its input (a CTE per order line)
    would be a statement of its own for each size, each held by every connection.

    PREPARE is not transactional: a statement prepared in a transaction that rolls
    back stays prepared. So it is recorded once its PREPARE has succeeded, sent as a
    round trip of its own the first time the connection meets the statement.

    A prepared statement's parameters take their types from where they stand in it, as
    the server infers them: one only in a SELECT list comes back as text, and one only
    in ``%s IS NULL`` cannot be prepared. Cast such a parameter (``%s::int``).
    """
    texts, values = [], []
    for text, params in statements:
        texts.append(_by_name(cursor, text, len(params)) if prepare else text)
        values += params
    try:
        cursor.execute("; ".join(texts), values)
    except DatabaseError as exc:
        executed = any(text.startswith("EXECUTE ") for text in texts)
        if executed and is_stale_prepared(exc):
            # Let every statement go and prepare afresh: the one that met this fails.
            _sessions[cursor.connection] = _Session(stale=True)
        raise


def is_stale_prepared(exc: BaseException) -> bool:
    """Did the server refuse a prepared statement that no longer stands: gone (a
    pooler's DISCARD ALL), or its rows' shape changed by a migration? A transient
    failure: the next run prepares it again."""
    cause = exc.__cause__
    code = getattr(cause, "pgcode", None)
    if code == "26000":
        return True
    # "cached plan must not change result type", known by where the server raised
    # it: its words are translated (lc_messages), the function's name is not.
    diagnostics = getattr(cause, "diag", None)
    return code == "0A000" and (
        getattr(diagnostics, "source_function", None) == "RevalidateCachedQuery"
    )


def _by_name(cursor, text: str, count: int) -> str:
    """``EXECUTE`` of ``text`` prepared on the cursor's connection, or the text itself
    when statements are not prepared (SQL_PREPARED_STATEMENTS) or the connection has
    too many."""
    if not settings.SQL_PREPARED_STATEMENTS:
        return text
    session = _sessions.setdefault(cursor.connection, _Session())
    name = session.names.get(text)
    if name is None:
        if len(session.names) >= MAX_PREPARED:
            return text
        if session.stale:
            cursor.execute("DEALLOCATE ALL")  # not transactional either
            session.stale = False
        digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()
        name = f"shop_{digest}_{next(_serial)}"
        # Sent with no parameters, so psycopg2 sends the text as it is (_numbered
        # makes each %% the % it stands for).
        cursor.execute(f"PREPARE {name} AS {_numbered(text)}")
        session.names[text] = name
    arguments = f"({', '.join(['%s'] * count)})" if count else ""
    return f"EXECUTE {name}{arguments}"


def _numbered(text: str) -> str:
    """``text`` with psycopg2's placeholders numbered as PostgreSQL's ($1, $2, ...).

    Any other ``%`` is refused, as psycopg2 refuses it when the text is sent as it is
    (preparing off, or past a cap): a statement must not work only when prepared."""
    count = 0

    def number(match: re.Match) -> str:
        nonlocal count
        if match.group(1) == "%":
            return "%"
        if match.group(1) != "s":
            raise ValueError(f"a % that is neither %s nor %%: {match.group()!r}")
        count += 1
        return f"${count}"

    return _PLACEHOLDER.sub(number, text)
