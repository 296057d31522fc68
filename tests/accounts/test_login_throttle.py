"""The admin sign-in is throttled by user name and client address (issue 18, part 4)."""

import time

import pytest
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.test import Client

pytestmark = pytest.mark.django_db

PASSWORD = "right-pass-123"
LOGIN = "/admin/login/?next=/admin/"


@pytest.fixture(autouse=True)
def _users_and_clean_counters(db, settings):
    settings.LOGIN_FAILURE_LIMIT = 5
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 12
    settings.LOGIN_LOCKOUT_SECONDS = 900
    # A fast hasher, so that the lockout window is what the tests measure, not PBKDF2.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    User = get_user_model()
    for name in ("admin", "other"):
        User.objects.create_user(username=name, password=PASSWORD, is_staff=True)
    cache.clear()
    yield
    cache.clear()


def sign_in(username, password, address="203.0.113.7"):
    """A fresh browser (its own session) posting the admin's sign-in form; True if signed in."""
    browser = Client()
    response = browser.post(LOGIN, {"username": username, "password": password}, REMOTE_ADDR=address)
    signed_in = response.status_code == 302 and "_auth_user_id" in browser.session
    return signed_in, response


def test_five_wrong_passwords_then_the_right_one_is_refused(settings):
    assert sign_in("admin", PASSWORD)[0]  # the control: the right password signs in
    for _ in range(5):
        ok, response = sign_in("admin", "wrong")
        assert not ok
        assert "Please enter the correct username and password" in response.content.decode()
    ok, response = sign_in("admin", PASSWORD)
    assert not ok
    assert "Too many failed sign-ins. Try again in 15 minute(s)." in response.content.decode()


def test_the_lockout_ends_after_the_window(settings):
    settings.LOGIN_LOCKOUT_SECONDS = 2
    for _ in range(5):
        sign_in("admin", "wrong")
    assert not sign_in("admin", PASSWORD)[0]
    time.sleep(2.2)
    assert sign_in("admin", PASSWORD)[0]


def test_another_address_and_another_user_are_not_locked_out():
    for _ in range(5):
        sign_in("admin", "wrong", address="203.0.113.7")
    assert not sign_in("admin", PASSWORD, address="203.0.113.7")[0]
    # The administrator at another address still signs in: nobody locks a user out from elsewhere.
    assert sign_in("admin", PASSWORD, address="198.51.100.1")[0]
    # Another user at the attacker's address too, until the address itself has too many failures.
    assert sign_in("other", PASSWORD, address="203.0.113.7")[0]


def test_spraying_user_names_from_one_address_is_limited():
    for n in range(12):
        assert not sign_in(f"guess-{n}", "wrong")[0]
    assert not sign_in("other", PASSWORD)[0]
    assert sign_in("other", PASSWORD, address="198.51.100.1")[0]


def test_a_success_clears_the_user_counter_but_not_the_address_counter(settings):
    for _ in range(4):
        sign_in("admin", "wrong")
    assert sign_in("admin", PASSWORD)[0]
    for _ in range(4):
        sign_in("admin", "wrong")
    assert sign_in("admin", PASSWORD)[0]  # 8 failures in all, never 5 in a row: still signs in
