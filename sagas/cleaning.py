"""Deleting old rows without holding up the writers of the same table."""

from django.db import models


def delete_in_batches(rows: models.QuerySet, *, batch: int = 1000) -> int:
    """Delete ``rows`` a batch at a time, each batch its own short statement that
    locks only the rows it deletes; return how many were deleted."""
    deleted = 0
    while True:
        ids = list(rows.order_by("pk").values_list("pk", flat=True)[:batch])
        if ids:
            deleted += rows.model.objects.filter(pk__in=ids).delete()[0]
        if len(ids) < batch:
            return deleted
