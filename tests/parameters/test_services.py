"""The services: every field rule, the limits, duplicates, updates, deletes and resolving."""

from __future__ import annotations

import pytest

from config.api.errors import ValidationFailed
from parameters import services
from parameters.exceptions import (
    ParameterAlreadyExists,
    ParameterLimitReached,
    ParameterNotFound,
    ParameterTypeImmutable,
)
from parameters.models import Parameter

pytestmark = pytest.mark.django_db


def error_of(excinfo) -> tuple[int, str, list[dict]]:
    exc = excinfo.value
    return exc.status, exc.code, exc.details


# --- name ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "credentials/payment-gateway/api-key",
        "A.b-c_d9",
        "..",
        "a" * 900,
        "/".join(["level"] * 10),
    ],
)
def test_valid_names_are_accepted(make_parameter, name):
    assert make_parameter(name=name).name == name


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "name must be 1 to 900 characters long."),
        ("a" * 901, "name must be 1 to 900 characters long."),
        ("/leading", None),
        ("trailing/", None),
        ("double//slash", None),
        ("has space", None),
        ("semi;colon", None),
        ("ümlaut", None),  # \w is ASCII here, as the seed's "alphanumeric characters"
        ("line\nbreak", None),
        ("name\n", None),  # $ must not accept a trailing newline
        ("/".join(["level"] * 11), "name may have at most 10 levels (separated by /)."),
    ],
)
def test_invalid_names_are_400_on_the_name_field(account, name, message):
    with pytest.raises(ValidationFailed) as excinfo:
        services.parameter_create(account=account, name=name, type="standard", value="v")
    status, code, details = error_of(excinfo)
    assert (status, code) == (400, "VALIDATION_ERROR")
    assert [detail["field"] for detail in details] == ["name"]
    if message is None:
        assert details[0]["message"].startswith("name may contain only letters, digits")
    else:
        assert details[0]["message"] == message
    assert Parameter.objects.count() == 0


# --- type ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("type_", ["Standard", "SENSITIVE", "secret", ""])
def test_type_is_exactly_standard_or_sensitive_case_sensitive(account, type_):
    with pytest.raises(ValidationFailed) as excinfo:
        services.parameter_create(account=account, name="n", type=type_, value="v")
    assert error_of(excinfo) == (
        400,
        "VALIDATION_ERROR",
        [{"field": "type", "message": 'type must be "standard" or "sensitive" (case-sensitive).'}],
    )


# --- value and description -------------------------------------------------------------------------


def test_value_is_1_to_8192_characters(make_parameter, account):
    assert make_parameter(name="one", value="x").value == "x"
    assert make_parameter(name="max", value="é" * 8192).value == "é" * 8192
    for value in ("", "x" * 8193):
        with pytest.raises(ValidationFailed) as excinfo:
            services.parameter_create(account=account, name="bad", type="sensitive", value=value)
        assert error_of(excinfo) == (
            400,
            "VALIDATION_ERROR",
            [{"field": "value", "message": "value must be 1 to 8192 characters long."}],
        )


def test_a_sensitive_value_of_8192_characters_round_trips(make_parameter, account):
    make_parameter(name="big", type="sensitive", value="€" * 8192)
    assert services.parameter_resolve(account=account, name="big") == "€" * 8192


def test_value_may_not_hold_null_characters(account):
    with pytest.raises(ValidationFailed) as excinfo:
        services.parameter_create(account=account, name="n", type="standard", value="a\x00b")
    assert error_of(excinfo)[2] == [{"field": "value", "message": "value may not contain null characters."}]


def test_description_is_at_most_1024_characters(make_parameter, account):
    assert make_parameter(name="d", description="d" * 1024).description == "d" * 1024
    with pytest.raises(ValidationFailed) as excinfo:
        services.parameter_create(
            account=account, name="e", type="standard", value="v", description="d" * 1025
        )
    assert error_of(excinfo) == (
        400,
        "VALIDATION_ERROR",
        [{"field": "description", "message": "description may be at most 1024 characters long."}],
    )


def test_several_broken_fields_are_all_reported(account):
    with pytest.raises(ValidationFailed) as excinfo:
        services.parameter_create(account=account, name="", type="x", value="", description="d" * 1025)
    assert excinfo.value.message == "The request is not valid."
    assert [detail["field"] for detail in excinfo.value.details] == ["name", "type", "value", "description"]


# --- limits and duplicates ---------------------------------------------------------------------------


def test_a_duplicate_name_is_409_and_names_are_case_sensitive(make_parameter, account):
    make_parameter(name="db/password")
    with pytest.raises(ParameterAlreadyExists) as excinfo:
        make_parameter(name="db/password", type="sensitive", value="other")
    assert error_of(excinfo)[:2] == (409, "PARAMETER_ALREADY_EXISTS")
    assert make_parameter(name="DB/password").name == "DB/password"
    assert Parameter.objects.filter(account=account).count() == 2


def test_the_same_name_in_another_account_is_fine(make_parameter, other_account):
    make_parameter(name="shared")
    assert make_parameter(name="shared", account=other_account).account_id == other_account.pk


def test_at_most_100_parameters_per_account(make_parameter, account, other_account):
    for index in range(100):
        make_parameter(name=f"p{index:03d}")
    with pytest.raises(ParameterLimitReached) as excinfo:
        make_parameter(name="one-too-many")
    assert error_of(excinfo)[:2] == (409, "PARAMETER_LIMIT_REACHED")
    assert Parameter.objects.filter(account=account).count() == 100
    # Another account has its own 100.
    assert make_parameter(name="p000", account=other_account).name == "p000"
    # Deleting one makes room again.
    services.parameters_delete(account=account, names=["p000"])
    assert make_parameter(name="one-more").name == "one-more"


# --- update ----------------------------------------------------------------------------------------------


def test_update_changes_description_value_or_both(make_parameter, account):
    parameter = make_parameter(name="n", value="old", description="first")
    services.parameter_update(parameter=parameter, description="second")
    assert services.parameter_resolve(account=account, name="n") == "old"
    services.parameter_update(parameter=parameter, value="new")
    parameter.refresh_from_db()
    assert (parameter.value, parameter.description) == ("new", "second")
    services.parameter_update(parameter=parameter, value="newer", description="")
    parameter.refresh_from_db()
    assert (parameter.value, parameter.description) == ("newer", "")


def test_update_needs_description_or_value(make_parameter):
    parameter = make_parameter(name="n")
    with pytest.raises(ValidationFailed) as excinfo:
        services.parameter_update(parameter=parameter)
    assert excinfo.value.message == "At least one field (description or value) must be provided."


def test_update_checks_the_field_rules(make_parameter):
    parameter = make_parameter(name="n", value="kept")
    with pytest.raises(ValidationFailed) as excinfo:
        services.parameter_update(parameter=parameter, value="", description="d" * 1025)
    assert [detail["field"] for detail in excinfo.value.details] == ["description", "value"]
    parameter.refresh_from_db()
    assert parameter.value == "kept"


def test_the_type_is_immutable(make_parameter, account):
    parameter = make_parameter(name="n", type="standard", value="plain")
    with pytest.raises(ParameterTypeImmutable) as excinfo:
        services.parameter_update(parameter=parameter, type="sensitive", value="secret")
    assert error_of(excinfo)[:2] == (400, "PARAMETER_TYPE_IMMUTABLE")
    parameter.refresh_from_db()
    assert (parameter.type, parameter.value) == ("standard", "plain")
    # The current type is accepted and changes nothing.
    services.parameter_update(parameter=parameter, type="standard", value="still plain")
    assert services.parameter_resolve(account=account, name="n") == "still plain"


def test_updating_a_sensitive_value_re_encrypts_it(make_parameter, account):
    parameter = make_parameter(name="s", type="sensitive", value="first-secret")
    token_before = Parameter.objects.get(pk=parameter.pk).encrypted_value
    services.parameter_update(parameter=parameter, value="second-secret")
    stored = Parameter.objects.get(pk=parameter.pk)
    assert stored.value == ""
    assert stored.encrypted_value != token_before
    assert services.parameter_resolve(account=account, name="s") == "second-secret"


# --- delete ------------------------------------------------------------------------------------------------


def test_delete_answers_a_mix_of_existing_and_unknown_names(make_parameter, account, other_account):
    make_parameter(name="a/one")
    make_parameter(name="a/two")
    make_parameter(name="b", type="sensitive", value="s")
    make_parameter(name="theirs", account=other_account)
    result = services.parameters_delete(account=account, names=["b", "nope", "a/one", "theirs", "bad name!"])
    assert result.as_dict() == {
        "deletedCount": 2,
        "deletedParameters": ["b", "a/one"],
        "invalidParameters": ["nope", "theirs", "bad name!"],
    }
    assert list(Parameter.objects.filter(account=account).values_list("name", flat=True)) == ["a/two"]
    assert Parameter.objects.filter(account=other_account, name="theirs").exists()


@pytest.mark.parametrize(
    ("names", "message"),
    [
        ([], "parameters must be a non-empty array of names."),
        (["a", "a"], "Parameter names must be unique."),
        ([f"n{i}" for i in range(101)], "At most 100 names per request."),
        (["a", 1], "Every parameter name must be a string."),
    ],
)
def test_delete_rejects_a_malformed_list(make_parameter, account, names, message):
    make_parameter(name="a")
    with pytest.raises(ValidationFailed) as excinfo:
        services.parameters_delete(account=account, names=names)
    assert error_of(excinfo) == (400, "VALIDATION_ERROR", [{"field": "parameters", "message": message}])
    assert Parameter.objects.filter(account=account).count() == 1


# --- resolve -------------------------------------------------------------------------------------------------


def test_resolve_returns_plaintext_of_both_types(make_parameter, account):
    make_parameter(name="url", value="https://example.test")
    make_parameter(name="token", type="sensitive", value="t0k3n")
    assert services.parameter_resolve(account=account, name="url") == "https://example.test"
    assert services.parameter_resolve(account=account.pk, name="token") == "t0k3n"


def test_resolve_is_scoped_to_the_account(make_parameter, other_account):
    make_parameter(name="mine", type="sensitive", value="s")
    with pytest.raises(ParameterNotFound) as excinfo:
        services.parameter_resolve(account=other_account, name="mine")
    assert error_of(excinfo)[:2] == (404, "PARAMETER_NOT_FOUND")


def test_repr_and_str_never_hold_the_value(make_parameter):
    standard = make_parameter(name="plain", value="visible-standard-value")
    sensitive = make_parameter(name="secret", type="sensitive", value="hidden-sensitive-value")
    assert str(sensitive) == "secret"
    assert repr(sensitive) == "<Parameter 'secret' (sensitive)>"
    assert repr(standard) == "<Parameter 'plain' (standard)>"
