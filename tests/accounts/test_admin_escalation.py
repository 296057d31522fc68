"""A staff user who may manage its account's users never climbs out of its account (issue 18, part 2).

Every attempt goes through the admin's own forms, filled from the page the admin renders (as a
browser would) and then altered as an attacker would; each is refused and nothing changes.
"""

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission

from accounts import services
from tests.accounts.admin_forms import admin_form

pytestmark = pytest.mark.django_db

User = get_user_model()
PASSWORD = "pw-12345678"
USERS = "/admin/auth/user/"


def perms(*names):
    found = []
    for name in names:
        app_label, codename = name.split(".")
        found.append(Permission.objects.get(content_type__app_label=app_label, codename=codename))
    return found


@pytest.fixture
def people(account, other_account):
    """root: a superuser linked to acme (as the demo's is); ann: acme staff who manages users; bob:
    acme staff; carl: globex staff. ann is in the group "acme-users"; "everything" holds all."""
    root = User.objects.create_superuser(username="root", password=PASSWORD)
    services.account_user_link(user=root, account=account)
    ann = User.objects.create_user(username="ann", password=PASSWORD, is_staff=True)
    ann.user_permissions.set(
        perms("auth.view_user", "auth.add_user", "auth.change_user", "auth.delete_user", "auth.view_group")
        + list(Permission.objects.filter(content_type__app_label="accounts"))
    )
    acme_users = Group.objects.create(name="acme-users")
    acme_users.permissions.set(perms("accounts.view_apikey"))
    ann.groups.add(acme_users)
    services.account_user_link(user=ann, account=account)
    everything = Group.objects.create(name="everything")
    everything.permissions.set(Permission.objects.all())
    bob = User.objects.create_user(username="bob", password=PASSWORD, is_staff=True)
    services.account_user_link(user=bob, account=account)
    carl = User.objects.create_user(username="carl", password=PASSWORD, is_staff=True)
    services.account_user_link(user=carl, account=other_account)
    return {"root": root, "ann": ann, "bob": bob, "carl": carl, "everything": everything}


@pytest.fixture
def as_ann(client, people):
    assert client.login(username="ann", password=PASSWORD)
    return client


def snapshot(user):
    user = User.objects.get(pk=user.pk)
    link = getattr(user, "account_link", None)
    return {
        "username": user.username,
        "password": user.password,
        "is_superuser": user.is_superuser,
        "is_staff": user.is_staff,
        "is_active": user.is_active,
        "groups": sorted(user.groups.values_list("name", flat=True)),
        "permissions": sorted(user.user_permissions.values_list("codename", flat=True)),
        "account": link.account_id if link else None,
    }


def change_form(client, user):
    fields, options = admin_form(client, f"{USERS}{user.pk}/change/", "user_form")
    return fields, options


def test_a_plain_edit_through_the_form_is_saved(as_ann, people):
    """The control for the refusals below: the same filled form, unaltered but for a name, saves."""
    fields, _ = change_form(as_ann, people["bob"])
    fields["first_name"] = ["Bob"]
    response = as_ann.post(f"{USERS}{people['bob'].pk}/change/", fields)
    assert response.status_code == 302
    assert User.objects.get(pk=people["bob"].pk).first_name == "Bob"


def test_the_user_list_shows_only_non_superusers_of_the_own_account(as_ann, people):
    page = as_ann.get(USERS).content.decode()
    assert f'href="/admin/auth/user/{people["bob"].pk}/change/"' in page
    assert f'href="/admin/auth/user/{people["root"].pk}/change/"' not in page
    assert f'href="/admin/auth/user/{people["carl"].pk}/change/"' not in page
    assert as_ann.get(f"{USERS}?is_superuser__exact=1").content.decode().count("/change/") == 0


def test_is_superuser_is_not_a_field_and_a_posted_one_is_ignored(as_ann, people):
    bob = people["bob"]
    fields, _ = change_form(as_ann, bob)
    assert "is_superuser" not in fields
    page = as_ann.get(f"{USERS}{bob.pk}/change/").content.decode()
    assert 'name="is_superuser"' not in page
    before = snapshot(bob)
    fields["is_superuser"] = ["on"]
    as_ann.post(f"{USERS}{bob.pk}/change/", fields)
    assert snapshot(bob) == before


def test_ann_cannot_make_herself_superuser(as_ann, people):
    ann = people["ann"]
    fields, _ = change_form(as_ann, ann)
    before = snapshot(ann)
    fields["is_superuser"] = ["on"]
    as_ann.post(f"{USERS}{ann.pk}/change/", fields)
    assert snapshot(ann) == before


def test_permissions_beyond_the_editors_own_are_neither_offered_nor_accepted(as_ann, people):
    bob, ann = people["bob"], people["ann"]
    delete_group = perms("auth.delete_group")[0]
    fields, options = change_form(as_ann, bob)
    offered = {value for value, _ in options["user_permissions"]}
    assert str(delete_group.pk) not in offered
    assert str(perms("auth.change_user")[0].pk) in offered
    for target in (bob, ann):
        fields, _ = change_form(as_ann, target)
        before = snapshot(target)
        fields["user_permissions"] = [*fields.get("user_permissions", []), str(delete_group.pk)]
        response = as_ann.post(f"{USERS}{target.pk}/change/", fields)
        assert response.status_code == 200  # the form again, with its error
        assert "Select a valid choice" in response.content.decode()
        assert snapshot(target) == before


def test_groups_beyond_the_editors_own_are_neither_offered_nor_accepted(as_ann, people):
    bob, everything = people["bob"], people["everything"]
    fields, options = change_form(as_ann, bob)
    assert {label.strip() for _, label in options["groups"]} == {"acme-users"}
    before = snapshot(bob)
    fields["groups"] = [str(everything.pk)]
    response = as_ann.post(f"{USERS}{bob.pk}/change/", fields)
    assert response.status_code == 200
    assert snapshot(bob) == before


def test_what_a_user_holds_beyond_the_editor_is_kept_when_the_editor_saves(as_ann, people):
    bob, everything = people["bob"], people["everything"]
    bob.groups.add(everything)
    bob.user_permissions.add(*perms("auth.delete_group"))
    fields, _ = change_form(as_ann, bob)
    fields["first_name"] = ["Bob"]
    assert as_ann.post(f"{USERS}{bob.pk}/change/", fields).status_code == 302
    after = snapshot(bob)
    assert after["groups"] == ["everything"]
    assert after["permissions"] == ["delete_group"]


def test_the_account_inline_offers_only_the_editors_account(as_ann, people, account, other_account):
    bob = people["bob"]
    fields, options = change_form(as_ann, bob)
    assert {value for value, _ in options["account_link-0-account"] if value} == {str(account.pk)}
    before = snapshot(bob)
    fields["account_link-0-account"] = [str(other_account.pk)]
    response = as_ann.post(f"{USERS}{bob.pk}/change/", fields)
    assert response.status_code == 200
    assert snapshot(bob) == before
    add_page = as_ann.get(f"{USERS}add/").content.decode()
    assert str(other_account.pk) not in add_page
    assert "globex" not in add_page


def test_a_superuser_of_the_account_cannot_be_opened_edited_or_given_a_password(as_ann, people):
    root = people["root"]
    before = snapshot(root)
    assert as_ann.get(f"{USERS}{root.pk}/change/").status_code == 302  # "does not exist"
    as_ann.post(
        f"{USERS}{root.pk}/change/",
        {"username": "root", "is_active": "", "is_staff": "on", "is_superuser": "on"},
    )
    response = as_ann.post(
        f"{USERS}{root.pk}/password/",
        {"password1": "taken-over-1", "password2": "taken-over-1", "set_usable_password": "true"},
    )
    assert response.status_code == 404
    as_ann.post(f"{USERS}{root.pk}/delete/", {"post": "yes"})
    as_ann.post(USERS, {"action": "delete_selected", "_selected_action": [str(root.pk)], "post": "yes"})
    assert snapshot(root) == before
    assert User.objects.get(pk=root.pk).check_password(PASSWORD)


def test_a_user_of_another_account_cannot_be_edited_or_given_a_password(as_ann, people):
    carl = people["carl"]
    before = snapshot(carl)
    assert as_ann.get(f"{USERS}{carl.pk}/change/").status_code == 302
    as_ann.post(f"{USERS}{carl.pk}/change/", {"username": "carl", "is_active": ""})
    response = as_ann.post(
        f"{USERS}{carl.pk}/password/",
        {"password1": "taken-over-1", "password2": "taken-over-1", "set_usable_password": "true"},
    )
    assert response.status_code == 404
    assert snapshot(carl) == before


def test_the_password_of_an_own_account_user_can_be_set(as_ann, people):
    """The control for the password refusals: the same form works for a user ann manages."""
    bob = people["bob"]
    fields, _ = admin_form(as_ann, f"{USERS}{bob.pk}/password/")
    fields.update({"password1": ["new-pass-123"], "password2": ["new-pass-123"]})
    assert as_ann.post(f"{USERS}{bob.pk}/password/", fields).status_code == 302
    assert User.objects.get(pk=bob.pk).check_password("new-pass-123")


def test_a_user_added_by_staff_joins_the_editors_account_and_nothing_more(
    as_ann, people, account, other_account
):
    fields, _ = admin_form(as_ann, f"{USERS}add/", "user_form")
    fields.update(
        {
            "username": ["dave"],
            "password1": ["dave-pass-123"],
            "password2": ["dave-pass-123"],
            "is_superuser": ["on"],
        }
    )
    assert as_ann.post(f"{USERS}add/", fields).status_code == 302
    dave = User.objects.get(username="dave")
    assert snapshot(dave)["is_superuser"] is False
    assert snapshot(dave)["account"] == account.pk

    fields, _ = admin_form(as_ann, f"{USERS}add/", "user_form")
    fields.update(
        {
            "username": ["eve"],
            "password1": ["eve-pass-1234"],
            "password2": ["eve-pass-1234"],
            "account_link-TOTAL_FORMS": ["1"],
            "account_link-0-account": [str(other_account.pk)],
        }
    )
    response = as_ann.post(f"{USERS}add/", fields)
    assert response.status_code == 200
    assert not User.objects.filter(username="eve").exists()


def test_groups_are_changed_by_superusers_only(as_ann, people):
    group = Group.objects.get(name="acme-users")
    before = sorted(group.permissions.values_list("pk", flat=True))
    response = as_ann.post(
        f"/admin/auth/group/{group.pk}/change/",
        {"name": "acme-users", "permissions": [str(p.pk) for p in Permission.objects.all()]},
    )
    assert response.status_code == 403
    assert sorted(group.permissions.values_list("pk", flat=True)) == before
    assert as_ann.post("/admin/auth/group/add/", {"name": "mine"}).status_code == 403
    assert not Group.objects.filter(name="mine").exists()
    assert as_ann.get(f"/admin/auth/group/{people['everything'].pk}/change/").status_code == 302


def test_the_billing_licence_is_not_the_account_staffs_to_give(as_ann, account):
    account.has_billing_license = False
    account.save()
    as_ann.post(
        f"/admin/accounts/account/{account.pk}/change/", {"name": "acme", "has_billing_license": "on"}
    )
    account.refresh_from_db()
    assert account.has_billing_license is False


def test_a_superuser_still_manages_everyone(client, people, other_account):
    assert client.login(username="root", password=PASSWORD)
    carl = people["carl"]
    fields, _ = change_form(client, carl)
    assert 'name="is_superuser"' in client.get(f"{USERS}{carl.pk}/change/").content.decode()
    fields["is_superuser"] = ["on"]
    assert client.post(f"{USERS}{carl.pk}/change/", fields).status_code == 302
    assert User.objects.get(pk=carl.pk).is_superuser
