"""What ``OPTIONS`` answers: the methods of the resource (also in the ``Allow`` header), nothing else.

DRF's default metadata describes serializer fields and checks permissions for each method it
lists, which turns a missing scope into a 403 on OPTIONS. OPTIONS needs a valid token and no scope.
"""

from __future__ import annotations

from rest_framework.metadata import BaseMetadata


class AllowedMethodsMetadata(BaseMetadata):
    def determine_metadata(self, request, view) -> dict:
        return {"allowedMethods": list(view.allowed_methods)}
