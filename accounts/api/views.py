"""``POST /oauth/token``: the client-credentials grant, JSON or form body (seed 000)."""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote_plus

from django.conf import settings
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.parsers import FormParser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.exceptions import InvalidClient, InvalidTokenRequest, UnsupportedGrantType
from accounts.services import access_token_grant, application_access_authenticate
from accounts.throttle import client_address, token_failures
from config.api.errors import RateLimited
from config.api.parsers import LimitedJSONParser
from config.api.ratelimit import enforce_rate_limit
from config.api.schema import ERROR_RESPONSES


class TokenRequestSerializer(serializers.Serializer):
    client_id = serializers.CharField()
    client_secret = serializers.CharField()
    grant_type = serializers.ChoiceField(choices=["client_credentials"])
    audience = serializers.CharField(required=False)
    scope = serializers.CharField(required=False)


TokenResponseSerializer = inline_serializer(
    "TokenResponse",
    {
        "access_token": serializers.CharField(),
        "expires_in": serializers.IntegerField(),
        "scope": serializers.CharField(),
        "token_type": serializers.CharField(),
    },
)


class TokenView(APIView):
    authentication_classes: list = []
    permission_classes: list = []
    throttle_classes: list = []
    parser_classes = [LimitedJSONParser, FormParser]

    @extend_schema(
        operation_id="createAccessToken",
        summary="Create access token",
        tags=["Authentication"],
        request=TokenRequestSerializer,
        auth=[],
        responses={200: TokenResponseSerializer, **ERROR_RESPONSES(400, 401, 413, 429)},
        description=(
            "Client-credentials grant. The client authenticates with `client_id` and `client_secret` in"
            " the body (client_secret_post) or with HTTP Basic in the `Authorization` header"
            " (client_secret_basic, RFC 6749 section 2.3.1); both at once must agree. Rate limits:"
            " 10/s per client, burst 5, counted only for requests with the client's right secret;"
            " per client address 50/s, and at most TOKEN_FAILURE_LIMIT failed authentications per"
            " TOKEN_FAILURE_WINDOW_SECONDS."
        ),
    )
    def post(self, request):
        address = client_address(request)
        enforce_rate_limit("token_source", f"token-source:{address}")
        limited = settings.RATE_LIMIT_ENABLED
        wait = token_failures.blocked_for(address) if limited else 0
        if wait:
            raise RateLimited(
                "Too many failed client authentications from this address.",
                headers={"Retry-After": str(wait)},
            )
        data = request.data if hasattr(request.data, "get") else {}
        client_id, client_secret = _client_credentials(request, data)
        missing = [
            name
            for name, value in (
                ("client_id", client_id),
                ("client_secret", client_secret),
                ("grant_type", data.get("grant_type")),
            )
            if not value
        ]
        if missing:
            raise InvalidTokenRequest(
                f"Missing required field(s): {', '.join(missing)}.",
                details=[{"field": name, "message": "This field is required."} for name in missing],
            )
        if data.get("grant_type") != "client_credentials":
            raise UnsupportedGrantType(
                details=[{"field": "grant_type", "message": "Must be client_credentials."}]
            )
        try:
            access = application_access_authenticate(client_id=client_id, client_secret=client_secret)
        except InvalidClient:
            if limited:
                token_failures.failed(address)
            raise
        # Only a request with the client's right secret reaches its bucket: nobody else can empty it.
        enforce_rate_limit("token", f"token:{client_id}")
        token = access_token_grant(access=access, scope=data.get("scope") or None)
        response = Response(token.as_dict())
        response["Cache-Control"] = "no-store"
        return response


def _client_credentials(request, data) -> tuple[str, str]:
    """(client_id, client_secret) from HTTP Basic (RFC 6749 section 2.3.1: each form-urlencoded,
    then base64) or from the body. Both present and different: 400."""
    body = (str(data.get("client_id") or ""), str(data.get("client_secret") or ""))
    scheme, _, encoded = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return body
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidTokenRequest("The Authorization header is not valid HTTP Basic credentials.")
    if ":" not in decoded:
        raise InvalidTokenRequest("The Authorization header is not valid HTTP Basic credentials.")
    user, _, password = decoded.partition(":")
    basic = (unquote_plus(user), unquote_plus(password))
    for name, in_body, in_header in zip(("client_id", "client_secret"), body, basic, strict=True):
        if in_body and in_body != in_header:
            raise InvalidTokenRequest(
                "Client credentials in the Authorization header and in the body differ.",
                details=[{"field": name, "message": "Differs from the Authorization header."}],
            )
    return basic
