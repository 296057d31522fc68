"""``POST /oauth/token`` under attack (issue 18, part 4) and with HTTP Basic (issue 21).

Design: every request takes from a bucket per client address (``token_source``); failed client
authentications are counted per client address (``TOKEN_FAILURE_LIMIT`` per
``TOKEN_FAILURE_WINDOW_SECONDS``, then 429 for that address); the seed's per-client bucket
(``token``) is taken only after the client's secret was verified, so only its holder can empty
it. An unknown client costs what a wrong secret does (the same hasher runs on a dummy hash).
"""

import base64
import json
import statistics
import time
from urllib.parse import quote, urlencode

import pytest
from django.core.cache import cache
from django.test import Client

from accounts import services
from accounts.exceptions import InvalidClient
from accounts.hashers import HighEntropySecretHasher
from tests.conftest import make_access

pytestmark = pytest.mark.django_db

ATTACKER = "203.0.113.66"
OWNER = "198.51.100.10"


@pytest.fixture(autouse=True)
def _clean_counters(db):
    cache.clear()
    yield
    cache.clear()


def ask(client_id, secret, address, **extra):
    return Client().post(
        "/oauth/token",
        json.dumps({"client_id": client_id, "client_secret": secret, "grant_type": "client_credentials"}),
        content_type="application/json",
        REMOTE_ADDR=address,
        **extra,
    )


def test_wrong_secrets_from_elsewhere_never_lock_out_the_client(account, rate_limits, settings):
    access, secret = make_access(account)
    statuses = [ask(access.client_id, f"wrong-{n}", ATTACKER).status_code for n in range(30)]
    assert statuses[: settings.TOKEN_FAILURE_LIMIT] == [401] * settings.TOKEN_FAILURE_LIMIT
    assert set(statuses[settings.TOKEN_FAILURE_LIMIT :]) == {429}
    # The client, with its secret, from its own address: its whole burst answers 200.
    assert [ask(access.client_id, secret, OWNER).status_code for _ in range(5)] == [200] * 5


def test_guessing_from_one_address_is_limited_whatever_the_client_ids(account, rate_limits, settings):
    settings.TOKEN_FAILURE_LIMIT = 10
    access, secret = make_access(account)
    statuses = [ask(f"guess-{n}", "x", ATTACKER).status_code for n in range(10)]
    assert statuses == [401] * 10
    refused = ask("guess-11", "x", ATTACKER)
    assert refused.status_code == 429
    assert refused.json()["code"] == "TOO_MANY_REQUESTS"
    assert 1 <= int(refused["Retry-After"]) <= settings.TOKEN_FAILURE_WINDOW_SECONDS
    # From that address even a right secret waits; from any other address it is served.
    assert ask(access.client_id, secret, ATTACKER).status_code == 429
    assert ask(access.client_id, secret, OWNER).status_code == 200


def test_the_per_client_bucket_is_taken_only_with_the_right_secret(account, rate_limits, settings):
    # Seed 000's burst of 5, refilled so slowly that a slow machine cannot add a token meanwhile.
    settings.RATE_LIMITS = {**settings.RATE_LIMITS, "token": (1, 3600, 5)}
    access, secret = make_access(account)
    for address in ("192.0.2.1", "192.0.2.2", "192.0.2.3"):
        assert [ask(access.client_id, "wrong", address).status_code for _ in range(5)] == [401] * 5
    statuses = [ask(access.client_id, secret, OWNER).status_code for _ in range(6)]
    assert statuses == [200] * 5 + [429]  # 15 failures took nothing from it; its own burst holds


def test_unknown_and_known_clients_run_the_same_hash(account, monkeypatch):
    access, secret = make_access(account)
    inactive, inactive_secret = make_access(account, name="inactive")
    services.application_access_revoke(access=inactive)
    verified = []
    original = HighEntropySecretHasher.verify

    def counting_verify(self, password, encoded):
        verified.append(password)
        return original(self, password, encoded)

    monkeypatch.setattr(HighEntropySecretHasher, "verify", counting_verify)
    for client_id, attempt in (
        ("unknown-client", "guess-1"),
        (access.client_id, "guess-2"),
        (inactive.client_id, inactive_secret),
    ):
        with pytest.raises(InvalidClient):
            services.application_access_authenticate(client_id=client_id, client_secret=attempt)
    assert verified == ["guess-1", "guess-2", inactive_secret]


@pytest.fixture
def costly_hash(monkeypatch):
    """Secrets hashed with 20 times the work, so the hash (not the database round trip) is what a
    timing shows; the dummy hash is remade with it."""
    monkeypatch.setattr(HighEntropySecretHasher, "iterations", 100_000)
    services._dummy_client_secret_hash.cache_clear()
    yield
    services._dummy_client_secret_hash.cache_clear()


def test_unknown_client_and_wrong_secret_take_the_same_time(account, costly_hash):
    """Interleaved, the median of each path; without the dummy hash the unknown path skips the
    PBKDF2 run and is more than ten times faster."""
    access, _ = make_access(account)

    def timed(client_id):
        started = time.perf_counter()
        with pytest.raises(InvalidClient):
            services.application_access_authenticate(client_id=client_id, client_secret="guess")
        return time.perf_counter() - started

    timed("warm-up")
    unknown, known = [], []
    for _ in range(15):
        unknown.append(timed("unknown-client"))
        known.append(timed(access.client_id))
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 0.6 < ratio < 1.6, (ratio, statistics.median(unknown), statistics.median(known))


def basic(client_id, secret):
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def form_post(body, authorization=None):
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    return Client().post(
        "/oauth/token", urlencode(body), content_type="application/x-www-form-urlencoded", **extra
    )


def test_client_secret_basic_is_accepted(account):
    access, secret = make_access(account)
    response = form_post({"grant_type": "client_credentials"}, basic(access.client_id, secret))
    assert response.status_code == 200
    assert response.json()["token_type"] == "Bearer"
    # The same credentials in the body as well: they agree, so it is fine.
    same = form_post(
        {"grant_type": "client_credentials", "client_id": access.client_id},
        basic(access.client_id, secret),
    )
    assert same.status_code == 200


def test_basic_and_body_credentials_that_differ_are_400(account):
    access, secret = make_access(account)
    other, other_secret = make_access(account, name="other")
    response = form_post(
        {"grant_type": "client_credentials", "client_id": other.client_id, "client_secret": other_secret},
        basic(access.client_id, secret),
    )
    assert response.status_code == 400
    assert response.json()["code"] == "INVALID_REQUEST"
    assert response.json()["details"][0]["field"] == "client_id"
    secret_differs = form_post(
        {"grant_type": "client_credentials", "client_secret": "another"}, basic(access.client_id, secret)
    )
    assert secret_differs.status_code == 400
    assert secret_differs.json()["details"] == [
        {"field": "client_secret", "message": "Differs from the Authorization header."}
    ]


def test_basic_with_a_wrong_secret_is_401_and_malformed_basic_is_400(account):
    access, _ = make_access(account)
    wrong = form_post({"grant_type": "client_credentials"}, basic(access.client_id, "wrong"))
    assert wrong.status_code == 401
    assert wrong.json()["code"] == "INVALID_CLIENT"
    for header in ("Basic !!!not-base64", "Basic " + base64.b64encode(b"no-colon").decode()):
        malformed = form_post({"grant_type": "client_credentials"}, header)
        assert malformed.status_code == 400
        assert malformed.json()["code"] == "INVALID_REQUEST"
