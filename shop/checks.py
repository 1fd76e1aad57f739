"""System checks of the project's own settings: request rates that cannot work."""

from django.core import checks

from shop.throttling import AnonRateThrottle, LoginRateThrottle, OrderRateThrottle


@checks.register()
def check_rates(app_configs, **kwargs) -> list[checks.CheckMessage]:
    """Each rate must parse as DRF parses it for every request, and allow some."""
    errors = []
    for throttle_class in (OrderRateThrottle, LoginRateThrottle, AnonRateThrottle):
        setting = throttle_class.setting
        try:
            throttle = throttle_class()
        except (ValueError, KeyError, IndexError, AttributeError) as exc:
            errors.append(_error(setting, f"cannot be read ({exc!r})"))
            continue
        if throttle.num_requests is None or throttle.num_requests < 1:
            errors.append(_error(setting, "must allow at least one request"))
    return errors


def _error(setting: str, problem: str) -> checks.Error:
    return checks.Error(
        f"{setting} {problem}: give a rate such as 60/min (n/s, n/min, n/h, n/day)",
        id="shop.E001",
    )
