"""The admin: a tree by slash hierarchy, masked sensitive values, a write-only value, tenancy."""

from __future__ import annotations

import re

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from accounts import services as account_services
from parameters import services
from parameters.models import Parameter

pytestmark = pytest.mark.django_db

SECRET = "admin-must-never-show-this-secret"
CHANGELIST = "/admin/parameters/parameter/"


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Admin logins only; the OAuth secret hasher stays in the list.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *settings.PASSWORD_HASHERS]


@pytest.fixture
def staff(client, account):
    user = get_user_model().objects.create_user(username="ann", password="pw-12345678", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="parameters"))
    account_services.account_user_link(user=user, account=account)
    client.login(username="ann", password="pw-12345678")
    return client


def change_url(parameter: Parameter) -> str:
    return f"{CHANGELIST}{parameter.pk}/change/"


def test_changelist_shows_a_tree_with_masked_sensitive_values(staff, make_parameter, other_account):
    make_parameter(name="a-b", value="dash")
    make_parameter(name="a/x/deep", value="deep-value")
    make_parameter(name="a", value="root-value")
    make_parameter(name="a/token", type="sensitive", value=SECRET)
    make_parameter(name="foreign", value="globex-value", account=other_account)

    page = staff.get(CHANGELIST).content.decode()

    assert SECRET not in page
    assert "********" in page
    assert "root-value" in page and "deep-value" in page
    assert "globex-value" not in page
    rows = re.findall(r'class="parameter-tree" data-depth="(\d+)".*?<strong>([^<]+)</strong>', page)
    # Children follow their parent ("a/…" before "a-b"), indented by depth.
    assert rows == [("0", "a"), ("1", "token"), ("2", "deep"), ("0", "a-b")]


def test_group_filter_narrows_to_one_top_level_group(staff, make_parameter):
    make_parameter(name="credentials/a")
    make_parameter(name="urls/b")
    page = staff.get(CHANGELIST, {"group": "credentials"}).content.decode()
    assert "<strong>a</strong>" in page
    assert "<strong>b</strong>" not in page


def test_adding_a_sensitive_parameter_encrypts_it(staff, account):
    response = staff.post(
        f"{CHANGELIST}add/",
        {"name": "vault/key", "type": "sensitive", "new_value": SECRET, "description": "from the admin"},
    )
    assert response.status_code == 302, response.content.decode()
    stored = Parameter.objects.get(account=account, name="vault/key")
    assert (stored.type, stored.value, stored.description) == ("sensitive", "", "from the admin")
    assert services.parameter_resolve(account=account, name="vault/key") == SECRET
    page = staff.get(change_url(stored)).content.decode()
    assert SECRET not in page
    assert stored.encrypted_value not in page
    assert "******** (sensitive: encrypted, never shown)" in page


def test_a_rejected_add_form_never_echoes_the_value(staff, account):
    response = staff.post(f"{CHANGELIST}add/", {"name": "bad name", "type": "sensitive", "new_value": SECRET})
    assert response.status_code == 200
    page = response.content.decode()
    assert "name may contain only letters, digits" in page
    assert SECRET not in page
    assert Parameter.objects.count() == 0


def test_add_form_reports_duplicate_and_limit_in_place(staff, make_parameter, account):
    make_parameter(name="taken")
    page = staff.post(
        f"{CHANGELIST}add/", {"name": "taken", "type": "standard", "new_value": "v"}
    ).content.decode()
    assert "A parameter named &#x27;taken&#x27; already exists in the account." in page
    for index in range(99):
        make_parameter(name=f"p{index}")
    page = staff.post(
        f"{CHANGELIST}add/", {"name": "new", "type": "standard", "new_value": "v"}
    ).content.decode()
    assert "maximum; delete one first." in page
    assert Parameter.objects.filter(account=account).count() == 100


def test_set_new_value_blank_keeps_it_and_a_new_value_re_encrypts(staff, make_parameter, account):
    parameter = make_parameter(name="vault/key", type="sensitive", value=SECRET, description="d1")
    token = Parameter.objects.get(pk=parameter.pk).encrypted_value

    response = staff.post(change_url(parameter), {"new_value": "", "description": "d2"})
    assert response.status_code == 302
    stored = Parameter.objects.get(pk=parameter.pk)
    assert (stored.description, stored.encrypted_value) == ("d2", token)
    assert services.parameter_resolve(account=account, name="vault/key") == SECRET

    response = staff.post(change_url(parameter), {"new_value": "rotated-secret", "description": "d2"})
    assert response.status_code == 302
    stored = Parameter.objects.get(pk=parameter.pk)
    assert stored.encrypted_value != token and stored.value == ""
    assert services.parameter_resolve(account=account, name="vault/key") == "rotated-secret"
    # The admin's history names the changed fields, never the values.
    history = [
        (entry.object_repr, entry.change_message) for entry in LogEntry.objects.order_by("action_time")
    ]
    assert history == [
        ("vault/key", '[{"changed": {"fields": ["Description"]}}]'),
        ("vault/key", '[{"changed": {"fields": ["Value"]}}]'),
    ]


def test_name_and_type_cannot_change_in_the_admin(staff, make_parameter, account):
    parameter = make_parameter(name="p", type="standard", value="v")
    response = staff.post(
        change_url(parameter), {"name": "q", "type": "sensitive", "new_value": "w", "description": ""}
    )
    assert response.status_code == 302
    stored = Parameter.objects.get(pk=parameter.pk)
    assert (stored.name, stored.type, stored.value) == ("p", "standard", "w")


def test_a_standard_value_is_editable_in_place(staff, make_parameter):
    parameter = make_parameter(name="p", type="standard", value="current-standard-value")
    page = staff.get(change_url(parameter)).content.decode()
    assert page.count("current-standard-value") == 2  # the read-only current value and the textarea


def test_delete_goes_through_the_service(staff, make_parameter, account):
    keep = make_parameter(name="keep")
    drop = make_parameter(name="drop", type="sensitive", value=SECRET)
    response = staff.post(
        CHANGELIST, {"action": "delete_selected", "_selected_action": [str(drop.pk)], "post": "yes"}
    )
    assert response.status_code == 302
    assert list(Parameter.objects.values_list("name", flat=True)) == ["keep"]
    response = staff.post(f"{CHANGELIST}{keep.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert Parameter.objects.count() == 0


def test_reencrypt_action(staff, make_parameter, account, settings):
    from cryptography.fernet import Fernet

    from tests.parameters.conftest import TEST_KEY

    parameter = make_parameter(name="s", type="sensitive", value=SECRET)
    new_key = Fernet.generate_key().decode()
    settings.PARAMETER_ENCRYPTION_KEYS = [new_key, TEST_KEY]
    response = staff.post(
        CHANGELIST,
        {"action": "reencrypt_with_newest_key", "_selected_action": [str(parameter.pk)]},
        follow=True,
    )
    assert "Re-encrypted 1 sensitive value(s) with the newest key." in response.content.decode()
    settings.PARAMETER_ENCRYPTION_KEYS = [new_key]
    assert services.parameter_resolve(account=account, name="s") == SECRET


def test_another_accounts_parameter_is_out_of_reach(staff, make_parameter, other_account):
    foreign = make_parameter(name="foreign", value="globex-value", account=other_account)
    assert staff.get(change_url(foreign)).status_code == 302
    staff.post(f"{CHANGELIST}{foreign.pk}/delete/", {"post": "yes"})
    assert Parameter.objects.filter(pk=foreign.pk).exists()


def test_superuser_picks_the_account_when_adding(client, account, other_account):
    get_user_model().objects.create_superuser(username="root", password="pw-12345678")
    client.login(username="root", password="pw-12345678")
    response = client.post(
        f"{CHANGELIST}add/",
        {"account": str(other_account.pk), "name": "n", "type": "standard", "new_value": "v"},
    )
    assert response.status_code == 302
    assert Parameter.objects.get().account_id == other_account.pk
    assert SECRET not in client.get(CHANGELIST).content.decode()
