"""``POST /oauth/token``: the client-credentials grant, JSON or form body (seed 000)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.parsers import FormParser
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.exceptions import InvalidTokenRequest, UnsupportedGrantType
from accounts.services import access_token_issue
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
        tags=["Authentication"],
        request=TokenRequestSerializer,
        auth=[],
        responses={200: TokenResponseSerializer, **ERROR_RESPONSES(400, 401, 413, 429)},
        description="Client-credentials grant. Rate limit: 10/s per client, burst 5.",
    )
    def post(self, request):
        data = request.data if hasattr(request.data, "get") else {}
        client_id = str(data.get("client_id") or "")
        enforce_rate_limit("token", f"token:{client_id or self.request.META.get('REMOTE_ADDR', '')}")
        missing = [name for name in ("client_id", "client_secret", "grant_type") if not data.get(name)]
        if missing:
            raise InvalidTokenRequest(
                f"Missing required field(s): {', '.join(missing)}.",
                details=[{"field": name, "message": "This field is required."} for name in missing],
            )
        if data.get("grant_type") != "client_credentials":
            raise UnsupportedGrantType(
                details=[{"field": "grant_type", "message": "Must be client_credentials."}]
            )
        token = access_token_issue(
            client_id=client_id, client_secret=str(data.get("client_secret")), scope=data.get("scope") or None
        )
        response = Response(token.as_dict())
        response["Cache-Control"] = "no-store"
        return response
