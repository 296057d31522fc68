"""Application Accesses and API keys in the admin: their use (tokens, last use), and revoking them with
a button whose confirmation calls the service, after which the API answers 401."""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import formats, timezone
from oauth2_provider.models import AccessToken
from rest_framework.test import APIClient

from accounts import services
from accounts.models import ApiKey, ApplicationAccess
from tests.conftest import issue_token, make_access
from tests.metering.factories import assert_error

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *settings.PASSWORD_HASHERS]


def staff(client, account, username="ann", codenames=None):
    user = get_user_model().objects.create_user(username=username, is_staff=True)
    permissions = Permission.objects.filter(content_type__app_label="accounts")
    user.user_permissions.set(permissions.filter(codename__in=codenames) if codenames else permissions)
    services.account_user_link(user=user, account=account)
    client.force_login(user)
    return client


def bearer(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return client


def test_an_application_access_page_shows_its_tokens_and_last_use_never_a_secret(client, account):
    access, secret = make_access(account, name="billing", scopes=["usage-metering:read:meters"])
    issue_token(access, secret)
    issue_token(access, secret)
    access.refresh_from_db()

    page = (
        staff(client, account).get(f"/admin/accounts/applicationaccess/{access.pk}/change/").content.decode()
    )

    assert page.count('<tr class="access-token" data-state="active">') == 2
    assert "<code>usage-metering:read:meters</code>" in page
    assert access.last_used_at is not None
    shown = formats.localize(timezone.template_localtime(access.last_used_at))
    assert "<label>Last used at:</label>" in page and f'<div class="readonly">{shown}</div>' in page
    assert secret not in page
    for token in AccessToken.objects.filter(application=access.application):
        assert token.token_checksum not in page
    assert f'href="/admin/accounts/applicationaccess/{access.pk}/revoke/" id="revoke-credential"' in page


def test_revoking_an_application_access_in_the_admin_makes_its_tokens_401(client, account):
    access, secret = make_access(account, name="billing")
    token = issue_token(access, secret)
    assert bearer(token).get("/meter-types").status_code == 200
    admin = staff(client, account)

    confirm = admin.get(f"/admin/accounts/applicationaccess/{access.pk}/revoke/")
    assert confirm.status_code == 200
    assert "Yes, revoke" in confirm.content.decode() and "1 token" in confirm.content.decode()
    access.refresh_from_db()
    assert access.is_active  # the confirmation page changes nothing

    done = admin.post(f"/admin/accounts/applicationaccess/{access.pk}/revoke/")
    assert (done.status_code, done["Location"]) == (
        302,
        f"/admin/accounts/applicationaccess/{access.pk}/change/",
    )
    access.refresh_from_db()
    assert not access.is_active
    assert AccessToken.objects.filter(application=access.application).count() == 0
    assert_error(bearer(token).get("/meter-types"), 401, "INVALID_TOKEN")
    assert_error(client_credentials(secret, access), 401, "INVALID_CLIENT")
    page = admin.get(f"/admin/accounts/applicationaccess/{access.pk}/change/").content.decode()
    assert 'id="credential-revoked"' in page and 'id="revoke-credential"' not in page
    assert "No token: none issued, or revoked." in page


def client_credentials(secret, access):
    return APIClient().post(
        "/oauth/token",
        {
            "client_id": access.client_id,
            "client_secret": secret,
            "grant_type": "client_credentials",
            "audience": "http://testserver/",
        },
        format="json",
    )


def test_revoking_an_api_key_in_the_admin_makes_it_401(client, account):
    key, raw = services.api_key_create(account=account, name="ingest")
    api_key_client = APIClient()
    api_key_client.credentials(HTTP_X_API_KEY=raw)
    assert api_key_client.get("/meter-definition").status_code == 200
    key.refresh_from_db()
    admin = staff(client, account)
    page = admin.get(f"/admin/accounts/apikey/{key.pk}/change/").content.decode()
    assert raw not in page and key.prefix in page
    assert (
        '<div class="readonly"><img src="/static/admin/img/icon-yes.svg" alt="True"></div>' in page
    )  # is active

    admin.post(f"/admin/accounts/apikey/{key.pk}/revoke/")

    key.refresh_from_db()
    assert not key.is_active
    assert_error(api_key_client.get("/meter-definition"), 401, "INVALID_API_KEY")
    assert 'id="credential-revoked"' in admin.get(f"/admin/accounts/apikey/{key.pk}/change/").content.decode()


def test_another_accounts_credentials_cannot_be_revoked_and_viewers_cannot_revoke(
    client, account, other_account
):
    theirs, _ = make_access(other_account, name="globex")
    their_key, _ = services.api_key_create(account=other_account, name="globex-key")
    admin = staff(client, account)
    assert admin.get(f"/admin/accounts/applicationaccess/{theirs.pk}/revoke/").status_code == 404
    assert admin.post(f"/admin/accounts/applicationaccess/{theirs.pk}/revoke/").status_code == 404
    assert admin.post(f"/admin/accounts/apikey/{their_key.pk}/revoke/").status_code == 404
    assert (
        ApplicationAccess.objects.get(pk=theirs.pk).is_active
        and ApiKey.objects.get(pk=their_key.pk).is_active
    )

    mine, _ = make_access(account, name="mine")
    viewer = staff(client, account, username="viewer", codenames=["view_applicationaccess"])
    assert (
        'id="revoke-credential"'
        not in viewer.get(f"/admin/accounts/applicationaccess/{mine.pk}/change/").content.decode()
    )
    assert viewer.post(f"/admin/accounts/applicationaccess/{mine.pk}/revoke/").status_code == 403
    assert ApplicationAccess.objects.get(pk=mine.pk).is_active


def test_the_revoke_action_revokes_the_selected_credentials(client, account):
    first, _ = make_access(account, name="one")
    second, _ = make_access(account, name="two")
    staff(client, account).post(
        "/admin/accounts/applicationaccess/",
        {"action": "revoke", "_selected_action": [str(first.pk), str(second.pk)]},
    )
    assert list(ApplicationAccess.objects.filter(account=account).values_list("is_active", flat=True)) == [
        False,
        False,
    ]
    listed = client.get("/admin/accounts/applicationaccess/?is_active__exact=0").context["cl"].result_list
    assert sorted(access.name for access in listed) == ["one", "two"]
