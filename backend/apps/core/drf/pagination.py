"""Pagination with a capped page size and strict query parameters."""

from __future__ import annotations

import re
from typing import Any

from rest_framework import exceptions
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request

MAX_LIMIT = 100
# A page past the last row is empty and costs one COUNT; the cap only keeps the
# number inside what every integer type on the way (and the schema) can hold.
MAX_OFFSET = 2**31 - 1
_DIGITS = re.compile(r"[0-9]{1,20}")


class StrictLimitOffsetPagination(LimitOffsetPagination):
    """limit/offset paging that refuses what it would otherwise guess at.

    DRF falls back to the default on a malformed value (`?offset=null` is page one)
    and passes any limit to the database (`?limit=10**20` is a bigint error, a large
    one reads the whole table). Here a malformed or out-of-range value is a 400, and
    the schema says exactly which values are accepted.
    """

    max_limit = MAX_LIMIT

    def get_limit(self, request: Request) -> int:
        return self._parse(request, self.limit_query_param, 1, MAX_LIMIT, None)

    def get_offset(self, request: Request) -> int:
        return self._parse(request, self.offset_query_param, 0, MAX_OFFSET, 0)

    def _parse(
        self, request: Request, name: str, minimum: int, maximum: int, default: Any
    ) -> int:
        raw = request.query_params.get(name)
        if raw is None:
            return self.default_limit if default is None else default
        if not _DIGITS.fullmatch(raw) or not minimum <= int(raw) <= maximum:
            raise exceptions.ValidationError(
                {name: [f"Expected an integer from {minimum} to {maximum}."]}
            )
        return int(raw)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        limit, offset = super().get_schema_operation_parameters(view)
        limit["example"], offset["example"] = 20, 40
        limit["schema"] = {
            "type": "integer",
            "minimum": 1,
            "maximum": MAX_LIMIT,
            "default": self.default_limit,
        }
        offset["schema"] = {
            "type": "integer",
            "minimum": 0,
            "maximum": MAX_OFFSET,
            "default": 0,
        }
        return [limit, offset]
