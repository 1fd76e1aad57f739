"""The API's one request parser: JSON, bounded in size, strict about what it accepts."""

import json

from django.conf import settings
from rest_framework.exceptions import ParseError
from rest_framework.parsers import BaseParser


class JSONParser(BaseParser):
    """UTF-8 JSON of at most ``DATA_UPLOAD_MAX_MEMORY_SIZE`` bytes, else a 400.

    Deliberately not a subclass of DRF's JSONParser: for those DRF reads
    ``request.body``, whose size check raises RequestDataTooBig outside the parser,
    which the exception handler never sees (a bare HTML 400). Here the body is read
    from the stream with the limit applied, so an oversized body gets the API's error
    shape, and at most limit + 1 bytes are ever held in memory.
    """

    media_type = "application/json"

    def parse(self, stream, media_type=None, parser_context=None):
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
        request = (parser_context or {}).get("request")
        declared = _content_length(request)
        if limit is not None and declared is not None and declared > limit:
            raise ParseError(_too_large(limit))
        body = stream.read() if limit is None else stream.read(limit + 1)
        if limit is not None and len(body) > limit:
            raise ParseError(_too_large(limit))
        try:
            return json.loads(body.decode("utf-8"), parse_constant=_no_constant)
        except UnicodeDecodeError as exc:
            raise ParseError(f"The request body is not valid UTF-8: {exc}.") from exc
        except (json.JSONDecodeError, NotJSON) as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        except RecursionError as exc:
            raise ParseError("JSON parse error - nested too deeply.") from exc
        except (
            ValueError
        ) as exc:  # int(): more digits than sys.get_int_max_str_digits()
            raise ParseError(
                "JSON parse error - a number has too many digits."
            ) from exc


def _content_length(request) -> int | None:
    if request is None:
        return None
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return None


def _too_large(limit: int) -> str:
    return f"The request body is larger than {limit} bytes."


class NotJSON(ValueError):
    pass


def _no_constant(name: str):
    raise NotJSON(f"{name} is not valid JSON")
