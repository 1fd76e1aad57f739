"""Project-wide state: the request counts the rate limits keep."""

from django.db import models


class RequestCount(models.Model):
    """Requests counted for one rate-limit key in one fixed window (shop.throttling).

    One row per key and window, counted up by a single atomic upsert, so concurrent
    requests in every web process see each other's counts.
    """

    key = models.CharField(max_length=120)
    window_end = models.DateTimeField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["key", "window_end"], name="request_count_one_per_window"
            ),
        ]
        indexes = [models.Index(fields=["window_end"], name="request_count_expiry")]

    def __str__(self) -> str:
        return f"{self.key}: {self.count} until {self.window_end}"
