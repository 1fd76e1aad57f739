"""Serializer pieces: strict input, output fields only staff see, the error shape.

DRF's own fields coerce (``"2"`` and ``2.0`` pass as the integer 2, ``12`` as the
string ``"12"``) and serializers ignore fields they do not declare. API input here is
exact instead, so a client's mistake is a 400 naming the field, never a guess.
"""

from collections.abc import Mapping

from django.core.validators import RegexValidator
from rest_framework import serializers
from rest_framework.exceptions import ErrorDetail, ValidationError


class StrictIntegerField(serializers.IntegerField):
    """A JSON integer: not a string, float, or boolean."""

    def to_internal_value(self, data):
        if type(data) is not int:  # bool is a subclass of int: excluded on purpose
            self.fail("invalid")
        return data


class StrictCharField(serializers.CharField):
    """A JSON string, taken as sent (not trimmed).

    DRF's CharField validators already refuse what PostgreSQL cannot store: NUL and
    lone surrogates (``"\\ud800"`` is valid JSON).
    """

    default_error_messages = {"invalid": "Not a valid string."}

    def __init__(self, **kwargs):
        kwargs.setdefault("trim_whitespace", False)
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return data


class StrictRegexField(StrictCharField):
    """A strict string that matches ``regex`` (anchor it with ``\\Z``, not ``$``)."""

    def __init__(self, regex: str, *, message: str, **kwargs):
        super().__init__(**kwargs)
        self.validators.append(RegexValidator(regex, message=message))


class StrictSerializer(serializers.Serializer):
    # Refuses fields it does not declare, by name. (A comment, not a docstring: the
    # OpenAPI schema would show it as every input's description.)

    def to_internal_value(self, data):
        unknown = {}
        if isinstance(data, Mapping):
            unknown = {
                str(name): [ErrorDetail("Unknown field.", code="unknown")]
                for name in data
                if name not in self.fields
            }
        try:
            value = super().to_internal_value(data)
        except ValidationError as exc:
            if not unknown or not isinstance(exc.detail, Mapping):
                raise
            raise ValidationError({**exc.detail, **unknown}) from exc
        if unknown:
            raise ValidationError(unknown)
        return value


class QuerySerializer(serializers.Serializer):
    # Query parameters (``data=request.query_params``), each given at most once: DRF
    # would quietly take the last of ``?status=FAILED&status=RUNNING``.

    def to_internal_value(self, data):
        if errors := once_each(data, self.fields):
            raise ValidationError(errors)
        return super().to_internal_value(data)


def once_each(query, names) -> dict[str, list[str]]:
    """An error for each of ``names`` given more than once in ``query``."""
    return {
        name: ["Given more than once; give it once."]
        for name in names
        if len(query.getlist(name)) > 1
    }


class StaffOnlyFieldMixin:
    """An output field shown to privileged readers only; everyone else gets it blank.

    The view says who is privileged in the serializer context (``"privileged": True``);
    without it the field is blank, so forgetting to say shows too little, not too much.
    One response schema serves both readers: the field is always there.
    """

    def to_representation(self, value):
        if self.context.get("privileged"):
            return super().to_representation(value)
        return self.blank()


class StaffOnlyCharField(StaffOnlyFieldMixin, serializers.CharField):
    def blank(self) -> str:
        return ""


class StaffOnlyDictField(StaffOnlyFieldMixin, serializers.DictField):
    def blank(self) -> dict:
        return {}


class ErrorSerializer(serializers.Serializer):
    """The one error shape (see shop.exceptions), for the OpenAPI schema."""

    message = serializers.CharField()
    extra = serializers.DictField(
        help_text='Validation errors list the bad fields by path under "fields", '
        'e.g. {"fields": {"items[0].sku": ["Unknown sku \'X\'."]}}.'
    )
