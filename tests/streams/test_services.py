"""stream_import: the three conflict strategies, node deletion, meter keys, cas, tags, tenancy."""

import uuid

import pytest

from config.api.errors import ApiError
from streams import services
from streams.models import Solution, Stream, StreamResourceRef, StreamVersion, StreamVersionResourceRef
from streams.services import ImportAction
from tests.streams.conftest import ACTOR, example, minimal_config

pytestmark = pytest.mark.django_db


def raises(code, status, call, *args, **kwargs):
    with pytest.raises(ApiError) as caught:
        call(*args, **kwargs)
    assert (caught.value.code, caught.value.status) == (code, status)
    return caught.value


def test_import_creates_a_stream_with_cas_1_and_its_resource_refs(import_stream, solution, account):
    result = import_stream(example("api-calls-metering"))
    stream = result.stream
    assert (result.action, result.tag) == (ImportAction.CREATED, None)
    assert (stream.account_id, stream.solution_id, stream.name, stream.processing_type) == (
        account.pk,
        solution.pk,
        "API calls metering",
        "realtime",
    )
    assert (stream.cas, stream.tag, stream.created_by, stream.updated_by) == (1, None, ACTOR, ACTOR)
    assert stream.nodes == example("api-calls-metering")["nodes"]
    assert sorted(
        StreamResourceRef.objects.filter(stream=stream).values_list("resource_type", "resource_id")
    ) == [("meterKey", "api-calls"), ("onlineCollector", "8a76066d-ff29-417c-a18e-abde22e44310")]
    assert StreamVersion.objects.count() == 0


def test_a_meter_without_key_gets_a_generated_one(import_stream):
    stream = import_stream(example("session-metering")).stream
    key = stream.nodes[3]["config"]["meterKey"]
    assert str(uuid.UUID(key)) == key
    assert StreamResourceRef.objects.filter(stream=stream, resource_type="meterKey").get().resource_id == key


def test_name_clash_without_a_strategy_is_409(import_stream):
    import_stream(minimal_config("Same"))
    raises("STREAM_NAME_EXISTS", 409, import_stream, minimal_config("Same"))
    assert Stream.objects.filter(name="Same").count() == 1


def test_skip_returns_the_existing_stream_untouched(import_stream):
    first = import_stream(minimal_config("Same", description="first")).stream
    result = import_stream(minimal_config("Same", description="second", tag="v2"), on_name_conflict="skip")
    assert (result.action, result.stream.pk, result.stream.description, result.stream.cas) == (
        ImportAction.SKIPPED,
        first.pk,
        "first",
        1,
    )
    assert result.tag is None
    assert StreamVersion.objects.count() == 0


def test_overwrite_replaces_the_configuration_and_increments_cas(import_stream):
    first = import_stream(minimal_config("Same", description="first")).stream
    config = minimal_config("Same", description="second")
    config["nodes"].append({"id": "peek", "name": "Peek", "type": "inspect", "config": {}})
    config["edges"].append({"source": "count", "target": "peek"})
    result = import_stream(config, on_name_conflict="overwrite")
    result.stream.refresh_from_db()
    assert (result.action, result.stream.pk, result.stream.description, result.stream.cas) == (
        ImportAction.OVERWRITTEN,
        first.pk,
        "second",
        2,
    )
    assert [n["id"] for n in result.stream.nodes] == ["in", "count", "peek"]
    result = import_stream(config, on_name_conflict="overwrite")
    assert Stream.objects.get(pk=first.pk).cas == 3


def test_overwrite_that_drops_nodes_is_refused_without_allow_node_deletion(import_stream):
    original = minimal_config("Same")
    original["nodes"].append({"id": "peek", "name": "Peek", "type": "inspect", "config": {}})
    stream = import_stream(original).stream
    error = raises(
        "NODE_DELETION_NOT_ALLOWED", 409, import_stream, minimal_config("Same"), on_name_conflict="overwrite"
    )
    assert error.details == [{"field": "nodes", "message": "Node 'peek' would be deleted."}]
    stream.refresh_from_db()
    assert (stream.cas, len(stream.nodes)) == (1, 3)


def test_overwrite_that_drops_nodes_is_allowed_with_allow_node_deletion(import_stream):
    original = minimal_config("Same")
    original["nodes"].append({"id": "peek", "name": "Peek", "type": "inspect", "config": {}})
    stream = import_stream(original).stream
    result = import_stream(minimal_config("Same"), on_name_conflict="overwrite", allow_node_deletion=True)
    stream.refresh_from_db()
    assert (result.action, stream.cas, [n["id"] for n in stream.nodes]) == (
        ImportAction.OVERWRITTEN,
        2,
        ["in", "count"],
    )


def test_overwrite_keeps_the_meter_key_of_a_node_that_omits_it(import_stream):
    generated = import_stream(example("session-metering")).stream.nodes[3]["config"]["meterKey"]
    stream = import_stream(example("session-metering"), on_name_conflict="overwrite").stream
    assert stream.nodes[3]["config"]["meterKey"] == generated


def test_create_new_without_a_clash_keeps_name_and_meter_keys(import_stream):
    result = import_stream(example("api-calls-metering"), on_name_conflict="create-new")
    assert (result.action, result.stream.name) == (ImportAction.CREATED, "API calls metering")
    assert result.stream.nodes[4]["config"]["meterKey"] == "api-calls"


def test_create_new_with_a_clash_makes_numbered_copies_with_new_meter_keys(import_stream):
    original = import_stream(example("api-calls-metering")).stream
    copy = import_stream(example("api-calls-metering"), on_name_conflict="create-new").stream
    second = import_stream(example("api-calls-metering"), on_name_conflict="create-new").stream
    assert [original.name, copy.name, second.name] == [
        "API calls metering",
        "API calls metering (Copy)",
        "API calls metering (Copy 2)",
    ]
    keys = [s.nodes[4]["config"]["meterKey"] for s in (original, copy, second)]
    assert keys[0] == "api-calls"
    assert len(set(keys)) == 3 and all(str(uuid.UUID(k)) == k for k in keys[1:])
    assert (
        StreamResourceRef.objects.filter(stream=copy, resource_type="meterKey").get().resource_id == keys[1]
    )
    assert (copy.cas, copy.pk != original.pk) == (1, True)


def test_copy_names_fit_the_name_limit(import_stream):
    long_name = "n" * 200
    import_stream(minimal_config(long_name))
    copy = import_stream(minimal_config(long_name), on_name_conflict="create-new").stream
    assert copy.name == "n" * 193 + " (Copy)"


def test_tagged_import_saves_the_stream_and_a_version(import_stream):
    result = import_stream(minimal_config("Tagged", tag="v1.0"))
    stream = result.stream
    version = StreamVersion.objects.get(stream=stream)
    assert (result.tag, stream.tag, version.tag, version.cas, version.nodes) == (
        "v1.0",
        "v1.0",
        "v1.0",
        1,
        stream.nodes,
    )
    assert list(
        StreamVersionResourceRef.objects.filter(version=version)
        .order_by("resource_type")
        .values_list("resource_type", "resource_id")
    ) == [("meterKey", "count-key"), ("onlineCollector", "8a76066d-ff29-417c-a18e-abde22e44310")]
    untagged = import_stream(
        minimal_config("Tagged", description="draft"), on_name_conflict="overwrite"
    ).stream
    assert (untagged.tag, untagged.cas, StreamVersion.objects.count()) == (None, 2, 1)
    retagged = import_stream(minimal_config("Tagged", tag="v1.1"), on_name_conflict="overwrite")
    assert (retagged.stream.cas, retagged.tag) == (3, "v1.1")
    assert list(StreamVersion.objects.order_by("cas").values_list("tag", "cas")) == [("v1.0", 1), ("v1.1", 3)]


def test_a_duplicate_tag_is_409_and_changes_nothing(import_stream):
    stream = import_stream(minimal_config("Tagged", tag="v1")).stream
    raises(
        "STREAM_TAG_EXISTS",
        409,
        import_stream,
        minimal_config("Tagged", description="x", tag="v1"),
        on_name_conflict="overwrite",
    )
    stream.refresh_from_db()
    assert (stream.cas, stream.description) == (1, "")


def test_the_tag_argument_overrides_the_config_tag(import_stream):
    result = import_stream(minimal_config("T", tag="from-config"), tag="from-argument")
    assert (result.tag, result.stream.versions.get().tag) == ("from-argument", "from-argument")
    raises("VALIDATION_ERROR", 400, import_stream, minimal_config("U"), tag="no spaces")


def test_invalid_config_is_400_before_any_write(import_stream):
    raises("VALIDATION_ERROR", 400, import_stream, {"name": "S", "nodes": [{"id": "a"}]})
    assert Stream.objects.count() == 0


def test_an_unknown_solution_id_is_created_for_the_account(account, other_account):
    key = uuid.uuid4()
    result = services.stream_import(
        account=account, solution_id=str(key), stream_config=minimal_config(), actor=ACTOR
    )
    assert result.action == services.ImportAction.CREATED
    solution = Solution.objects.get(pk=key)
    assert (solution.account_id, solution.name, result.stream.solution_id) == (account.pk, str(key), key)
    # The next import goes into the same solution; nothing is created twice.
    again = services.stream_import(
        account=account, solution_id=str(key), stream_config=minimal_config("Second"), actor=ACTOR
    )
    assert again.stream.solution_id == key and Solution.objects.filter(account=account).count() == 1
    assert not Solution.objects.filter(account=other_account).exists()


def test_another_accounts_solution_id_is_404_and_nothing_is_created_or_changed(account, foreign_solution):
    before = list(Solution.objects.values_list("pk", "account_id", "name"))
    raises(
        "SOLUTION_NOT_FOUND",
        404,
        services.stream_import,
        account=account,
        solution_id=str(foreign_solution.pk),
        stream_config=minimal_config(),
        actor=ACTOR,
    )
    assert list(Solution.objects.values_list("pk", "account_id", "name")) == before
    assert Stream.objects.count() == 0


def test_a_solution_id_that_is_not_a_uuid_is_400(account):
    for solution_id in ("not-a-uuid", "x" * 37):
        raises(
            "VALIDATION_ERROR",
            400,
            services.stream_import,
            account=account,
            solution_id=solution_id,
            stream_config=minimal_config(),
            actor=ACTOR,
        )
    assert Solution.objects.count() == 0


def test_an_unknown_strategy_is_400(import_stream):
    raises("VALIDATION_ERROR", 400, import_stream, minimal_config(), on_name_conflict="merge")


def test_the_same_name_in_another_solution_is_no_clash(import_stream, second_solution):
    import_stream(minimal_config("Same"))
    result = import_stream(minimal_config("Same"), target=second_solution)
    assert (result.action, result.stream.solution_id) == (ImportAction.CREATED, second_solution.pk)


def test_solutions(account):
    solution = services.solution_create(account=account, name="One")
    raises("SOLUTION_NAME_EXISTS", 409, services.solution_create, account=account, name="One")
    raises("VALIDATION_ERROR", 400, services.solution_create, account=account, name="  ")
    assert services.solution_rename(solution=solution, name="Two").name == "Two"


def test_only_an_empty_solution_can_be_deleted(import_stream, solution):
    stream = import_stream(minimal_config("S", tag="v1")).stream
    raises("SOLUTION_IN_USE", 409, services.solution_delete, solution=solution)
    services.stream_delete(stream=stream)
    assert StreamVersion.objects.count() == 0
    services.solution_delete(solution=solution)
    assert Solution.objects.count() == 0


def test_actors():
    from config.api.principal import make_principal

    principal = make_principal(account_id=uuid.uuid4(), client_key="client:abc123", scopes=[])
    assert services.actor_for_principal(principal) == {"type": "client", "id": "abc123"}
