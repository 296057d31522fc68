import pytest
from django.contrib.auth import get_user_model

from accounts import services
from tests.conftest import make_access

pytestmark = pytest.mark.django_db


def staff_of(account, username):
    user = get_user_model().objects.create_user(username=username, password="pw-12345678", is_staff=True)
    from django.contrib.auth.models import Permission

    user.user_permissions.set(Permission.objects.filter(content_type__app_label="accounts"))
    services.account_user_link(user=user, account=account)
    return user


def test_admin_opens(client, account):
    assert client.get("/admin/").status_code == 302
    staff_of(account, "ann")
    client.login(username="ann", password="pw-12345678")
    assert client.get("/admin/").status_code == 200


def test_staff_of_account_a_sees_none_of_account_b(client, account, other_account):
    make_access(account, name="acme-client")
    foreign, _ = make_access(other_account, name="globex-client")
    staff_of(account, "ann")
    client.login(username="ann", password="pw-12345678")
    page = client.get("/admin/accounts/applicationaccess/").content.decode()
    assert "acme-client" in page
    assert "globex-client" not in page
    assert client.get(f"/admin/accounts/applicationaccess/{foreign.pk}/change/").status_code == 302
    accounts_page = client.get("/admin/accounts/account/").content.decode()
    assert "globex" not in accounts_page


def test_creating_an_application_access_in_the_admin_shows_the_secret_once(client, account):
    staff_of(account, "ann")
    client.login(username="ann", password="pw-12345678")
    response = client.post(
        "/admin/accounts/applicationaccess/add/",
        {"name": "from-admin", "scopes": ["usage-metering:read:meters"], "is_active": "on"},
        follow=True,
    )
    # Redirected after the POST to the page that shows the secret once.
    assert response.redirect_chain == [("/admin/accounts/applicationaccess/secret/", 303)]
    page = response.content.decode()
    assert 'id="client-secret"' in page
    reloaded = client.get("/admin/accounts/applicationaccess/secret/").content.decode()
    assert 'id="client-secret"' not in reloaded and 'id="secret-gone"' in reloaded
    access = account.application_accesses.get(name="from-admin")
    assert access.scopes == ["usage-metering:read:meters"]
    change_page = client.get(f"/admin/accounts/applicationaccess/{access.pk}/change/").content.decode()
    assert 'id="client-secret"' not in change_page
