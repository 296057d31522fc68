"""The one base viewset: tenancy, lookups, list wrapping, pagination and sorting, once.

Subclasses declare ``queryset``, ``serializer_class``, ``list_key`` (the seed's wrapper key),
``sort_fields``, ``required_scopes`` (per action), ``throttle_group`` and ``not_found_code``,
and call services in ``perform_create`` / ``perform_update`` / ``perform_destroy``.
"""

from __future__ import annotations

import uuid

from django.db.models import QuerySet
from rest_framework import viewsets
from rest_framework.response import Response

from config.api.errors import NotFound
from config.api.pagination import paginate, sort_queryset
from config.api.principal import Principal


class AccountScopedViewSet(viewsets.GenericViewSet):
    list_key: str = "items"
    sort_fields: dict[str, str] = {"createdAt": "created_at"}
    default_sort: str = "createdAt"
    not_found_code: str = "NOT_FOUND"
    not_found_message: str = "Not found."
    account_field: str = "account_id"
    lookup_value_is_uuid: bool = True

    @property
    def principal(self) -> Principal:
        return self.request.auth

    @property
    def account_id(self) -> uuid.UUID:
        return self.request.auth.account_id

    def get_queryset(self) -> QuerySet:
        # Tenancy: every query is filtered by the caller's account; another account's id is a 404.
        return super().get_queryset().filter(**{self.account_field: self.account_id})

    def filter_list(self, queryset: QuerySet) -> QuerySet:
        """Hook for list filters (``name``, ``userId``…)."""
        return queryset

    def get_object(self):
        lookup = self.kwargs[self.lookup_url_kwarg or self.lookup_field]
        if self.lookup_value_is_uuid:
            try:
                lookup = uuid.UUID(str(lookup))
            except ValueError:
                raise self.not_found()
        try:
            obj = self.get_queryset().get(**{self.lookup_field: lookup})
        except self.get_queryset().model.DoesNotExist:
            raise self.not_found()
        self.check_object_permissions(self.request, obj)
        return obj

    def not_found(self) -> NotFound:
        return NotFound(self.not_found_message, code=self.not_found_code)

    def list(self, request, *args, **kwargs):
        queryset = self.filter_list(self.get_queryset())
        queryset = sort_queryset(
            queryset, request.query_params, fields=self.sort_fields, default=self.default_sort
        )
        page = paginate(queryset, request.query_params)
        return Response({self.list_key: self.get_serializer(page, many=True).data})

    def retrieve(self, request, *args, **kwargs):
        return Response(self.get_serializer(self.get_object()).data)
