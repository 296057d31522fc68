"""The admin: solutions, the import page, export downloads, the graph drawing, tenancy."""

import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile

from accounts import services as account_services
from streams import services
from streams.models import Solution, Stream
from tests.streams.conftest import ACTOR, example, minimal_config

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    # Admin logins here test permissions, not password storage; PBKDF2's work factor only slows them.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *settings.PASSWORD_HASHERS]


@pytest.fixture
def staff(client, account):
    user = get_user_model().objects.create_user(username="ann", password="pw-12345678", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="streams"))
    account_services.account_user_link(user=user, account=account)
    client.login(username="ann", password="pw-12345678")
    return client


@pytest.fixture
def stream(account, solution):
    services.stream_import(
        account=account,
        solution_id=solution.pk,
        actor=ACTOR,
        stream_config=example("api-calls-metering") | {"tag": "v1"},
    )
    return services.stream_import(
        account=account,
        solution_id=solution.pk,
        actor=ACTOR,
        on_name_conflict="overwrite",
        stream_config=example("api-calls-metering") | {"description": "now"},
    ).stream


def test_adding_a_solution_puts_it_in_the_users_account(staff, account):
    response = staff.post("/admin/streams/solution/add/", {"name": "From admin"})
    assert response.status_code == 302
    assert Solution.objects.get(name="From admin").account_id == account.pk


def test_solutions_and_streams_of_another_account_are_invisible(staff, stream, other_account):
    foreign_solution = services.solution_create(account=other_account, name="Globex solution")
    foreign = services.stream_import(
        account=other_account,
        solution_id=foreign_solution.pk,
        actor=ACTOR,
        stream_config=minimal_config("Globex stream"),
    ).stream
    streams_page = staff.get("/admin/streams/stream/").content.decode()
    assert "API calls metering" in streams_page and "Globex stream" not in streams_page
    assert "Globex solution" not in streams_page  # not even in the solution filter
    assert "Globex solution" not in staff.get("/admin/streams/solution/").content.decode()
    assert staff.get(f"/admin/streams/stream/{foreign.pk}/change/").status_code == 302
    assert staff.get(f"/admin/streams/stream/{foreign.pk}/export/").status_code == 404


def test_the_stream_page_draws_the_graph_and_lists_versions(staff, stream):
    page = staff.get(f"/admin/streams/stream/{stream.pk}/change/").content.decode()
    assert page.count('<g class="node"') == 7
    assert page.count('<path class="edge"') == 6
    assert 'data-node-id="meter"' in page and ">meter</text>" in page
    assert 'id="export-stream"' in page
    assert f"/admin/streams/stream/{stream.pk}/export/?tag=v1" in page
    assert 'name="_save"' not in page  # read-only: streams change by import only


def test_export_downloads_the_importable_json(staff, stream, api):
    response = staff.get(f"/admin/streams/stream/{stream.pk}/export/")
    assert response["Content-Disposition"] == 'attachment; filename="api-calls-metering.json"'
    assert json.loads(response.content) == api.get(f"/streams/{stream.pk}/export").json()
    tagged = staff.get(f"/admin/streams/stream/{stream.pk}/export/?tag=v1")
    assert tagged["Content-Disposition"] == 'attachment; filename="api-calls-metering-v1.json"'
    assert json.loads(tagged.content)["tag"] == "v1"
    assert staff.get(f"/admin/streams/stream/{stream.pk}/export/?tag=nope").status_code == 404


def test_export_action_for_one_selected_stream(staff, stream):
    response = staff.post(
        "/admin/streams/stream/", {"action": "export_selected", "_selected_action": [stream.pk]}
    )
    assert json.loads(response.content)["name"] == "API calls metering"


def test_import_page_uploads_a_json_file(staff, solution, account):
    listing = staff.get("/admin/streams/stream/").content.decode()
    assert 'id="import-stream"' in listing
    assert staff.get("/admin/streams/stream/import/").status_code == 200
    upload = SimpleUploadedFile(
        "stream.json", json.dumps(example("session-metering")).encode(), content_type="application/json"
    )
    response = staff.post("/admin/streams/stream/import/", {"solution": solution.pk, "file": upload})
    stream = Stream.objects.get(name="Charging sessions")
    assert (
        response.status_code == 302 and response["Location"] == f"/admin/streams/stream/{stream.pk}/change/"
    )
    assert (stream.account_id, stream.cas, stream.created_by) == (
        account.pk,
        1,
        {"type": "user", "id": "ann"},
    )


def test_import_page_shows_validation_problems_and_conflicts(staff, solution):
    bad = {
        "name": "Bad",
        "nodes": [{"id": "a", "name": "A", "type": "meter", "config": {"meterKey": "k" * 40}}],
    }
    page = staff.post(
        "/admin/streams/stream/import/", {"solution": solution.pk, "config_text": json.dumps(bad)}
    ).content.decode()
    assert "<code>nodes[0].config.meterKey</code>: Expected `str` of length &lt;= 36" in page
    staff.post(
        "/admin/streams/stream/import/",
        {"solution": solution.pk, "config_text": json.dumps(minimal_config())},
    )
    page = staff.post(
        "/admin/streams/stream/import/",
        {"solution": solution.pk, "config_text": json.dumps(minimal_config())},
    ).content.decode()
    assert "A stream with this name exists in the solution" in page
    response = staff.post(
        "/admin/streams/stream/import/",
        {
            "solution": solution.pk,
            "on_name_conflict": "create-new",
            "config_text": json.dumps(minimal_config()),
        },
    )
    assert response.status_code == 302
    assert sorted(Stream.objects.values_list("name", flat=True)) == ["Minimal", "Minimal (Copy)"]
    assert (
        "Not valid JSON"
        in staff.post(
            "/admin/streams/stream/import/", {"solution": solution.pk, "config_text": "{"}
        ).content.decode()
    )


def test_import_page_refuses_another_accounts_solution(staff, foreign_solution):
    page = staff.post(
        "/admin/streams/stream/import/",
        {"solution": foreign_solution.pk, "config_text": json.dumps(minimal_config())},
    ).content.decode()
    assert "Select a valid choice" in page
    assert Stream.objects.count() == 0


def test_deleting_a_stream_in_the_admin(staff, stream):
    response = staff.post(f"/admin/streams/stream/{stream.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert Stream.objects.count() == 0


def test_a_user_without_stream_permissions_cannot_import(client, account, solution):
    user = get_user_model().objects.create_user(username="bob", password="pw-12345678", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename="view_stream"))
    account_services.account_user_link(user=user, account=account)
    client.login(username="bob", password="pw-12345678")
    assert 'id="import-stream"' not in client.get("/admin/streams/stream/").content.decode()
    assert client.get("/admin/streams/stream/import/").status_code == 403


def test_the_meter_inspector_lists_the_meters_of_each_meter_node_with_their_values(
    staff, stream, account, other_account
):
    from metering.models import Meter
    from metering.services import meter_create, meter_type_create

    meter_key = next(node["config"]["meterKey"] for node in stream.nodes if node["type"] == "meter")
    calls = meter_type_create(
        account_id=account.pk,
        name="Inspected calls",
        unit="call",
        aggregation="SUM",
        reset_cron="0 0 1 * *",
        timezone="Etc/UTC",
    )
    meter_create(account_id=account.pk, meter_key=meter_key, user_id="inspected-user", meter_type_id=calls.pk)
    foreign = meter_type_create(
        account_id=other_account.pk,
        name="Foreign calls",
        unit="call",
        aggregation="SUM",
        reset_cron="0 0 1 * *",
        timezone="Etc/UTC",
    )
    meter_create(
        account_id=other_account.pk, meter_key=meter_key, user_id="foreign-user", meter_type_id=foreign.pk
    )
    page = staff.get(f"/admin/streams/stream/{stream.pk}/change/").content.decode()
    assert f"meterKey {meter_key}" in page
    inspected = Meter.objects.get(user_id="inspected-user")
    assert (
        f'<td>Inspected calls</td><td><a href="/admin/metering/meter/{inspected.pk}/change/">inspected-user</a>'
        "</td><td>0 call</td><td>0</td>"
    ) in page
    assert "foreign-user" not in page


def test_compare_versions_shows_what_changed_between_two_versions(staff, account, solution, stream):
    changed = example("api-calls-metering") | {"tag": "v2"}
    changed["nodes"] = [node for node in changed["nodes"] if node["id"] != "peek"]
    changed["edges"] = [edge for edge in changed["edges"] if edge["target"] != "peek"]
    services.stream_import(
        account=account,
        solution_id=solution.pk,
        actor=ACTOR,
        on_name_conflict="overwrite",
        allow_node_deletion=True,
        stream_config=changed,
    )
    v1, v2 = (stream.versions.get(tag=tag) for tag in ("v1", "v2"))

    # By default the two newest versions.
    response = staff.get(f"/admin/streams/stream/{stream.pk}/compare/")
    diff = response.context["diff"]
    assert (diff.before_label, diff.after_label) == ("v1 (cas 1)", "v2 (cas 3)")
    assert [(node.node_id, node.status) for node in diff.nodes] == [("peek", "removed")]
    assert diff.edges_removed == [("dedup", "peek")]
    page = response.content.decode()
    assert '<tr class="diff-node diff-removed" data-node-id="peek" data-status="removed">' in page
    assert '<span class="diff-line diff-removed">-      &quot;id&quot;: &quot;peek&quot;,</span>' in page

    response = staff.get(f"/admin/streams/stream/{stream.pk}/compare/?before={v2.pk}&after={v2.pk}")
    assert response.context["diff"].is_empty
    assert "No difference between v2 (cas 3) and v2 (cas 3)." in response.content.decode()
    # The latest configuration is a side too; the inline's link compares a version with it.
    assert (
        f"/admin/streams/stream/{stream.pk}/compare/?before={v1.pk}&amp;after=latest"
        in staff.get(f"/admin/streams/stream/{stream.pk}/change/").content.decode()
    )
    latest = staff.get(f"/admin/streams/stream/{stream.pk}/compare/?before={v1.pk}&after=latest").context[
        "diff"
    ]
    assert latest.after_label == "latest (cas 3)"
    assert [node.node_id for node in latest.nodes] == ["peek"]


def test_compare_refuses_unknown_versions_and_other_accounts_streams(staff, stream, other_account):
    response = staff.get(f"/admin/streams/stream/{stream.pk}/compare/?before=nonsense&after=latest")
    assert response.status_code == 200 and response.context["diff"] is None
    assert "Select a valid choice" in response.content.decode()
    foreign_solution = services.solution_create(account=other_account, name="Globex")
    foreign = services.stream_import(
        account=other_account,
        solution_id=foreign_solution.pk,
        actor=ACTOR,
        stream_config=minimal_config("Globex stream") | {"tag": "g1"},
    ).stream
    foreign_version = foreign.versions.get()
    assert staff.get(f"/admin/streams/stream/{foreign.pk}/compare/").status_code == 404
    assert staff.get(f"/admin/streams/stream/{foreign.pk}/preview/").status_code == 404
    assert staff.post(f"/admin/streams/stream/{foreign.pk}/preview/", {"records": "{}"}).status_code == 404
    # Another stream's version is not a choice of this one.
    mixed = staff.get(f"/admin/streams/stream/{stream.pk}/compare/?before={foreign_version.pk}&after=latest")
    assert mixed.context["diff"] is None


def test_the_preview_form_shows_each_nodes_output_and_rejections_and_saves_nothing(staff, stream):
    from streams.models import InspectRecord, StreamRun

    records = [
        {
            "requestId": "r1",
            "status": 200,
            "internal": False,
            "path": "/v1/orders",
            "region": "eu",
            "customer": {"id": "c-1", "plan": "pro"},
        },
        {
            "requestId": "r2",
            "status": 503,
            "internal": False,
            "path": "/v1/orders",
            "customer": {"id": "c-1"},
        },
        {
            "requestId": "r1",
            "status": 200,
            "internal": False,
            "path": "/v1/orders",
            "customer": {"id": "c-1"},
        },
        "not a record",
    ]
    page = staff.get(f"/admin/streams/stream/{stream.pk}/preview/")
    assert page.status_code == 200 and page.context["result"] is None
    assert page.content.decode().count('<g class="node"') == 7

    response = staff.post(f"/admin/streams/stream/{stream.pk}/preview/", {"records": json.dumps(records)})
    assert response.status_code == 200
    nodes = {node.id: node for node in response.context["nodes"]}
    assert {node_id: node.counts for node_id, node in nodes.items()} == {
        "collector": {"in": 4, "out": 3, "rejected": 1},
        "only-billable": {"in": 3, "out": 2, "rejected": 0},  # a filter drops, it does not reject
        "shape": {"in": 2, "out": 2, "rejected": 0},
        "dedup": {"in": 2, "out": 1, "rejected": 0},
        "meter": {"in": 1, "out": 1, "rejected": 0},
        "billing": {"in": 1, "out": 1, "rejected": 0},
        "peek": {"in": 1, "out": 1, "rejected": 0},
    }
    assert json.loads(nodes["shape"].records[0])["userId"] == "c-1"
    assert [json.loads(record) for record in nodes["only-billable"].records] == records[:1] + records[2:3]
    assert nodes["collector"].rejections == [('"not a record"', "a record must be a JSON object")]
    page = response.content.decode()
    assert '<td class="preview-reason">' in page
    assert 'class="module preview-node" data-node-id="dedup"' in page
    assert (StreamRun.objects.count(), InspectRecord.objects.count()) == (0, 0)

    # One object per line (as a collector receives them), and the refusals of the form.
    ndjson = "\n".join(json.dumps(record) for record in records[:2])
    lines = staff.post(f"/admin/streams/stream/{stream.pk}/preview/", {"records": ndjson})
    assert lines.context["result"].records_in == 2
    assert lines.context["result"].result_for("only-billable").counts() == {"in": 2, "out": 1, "rejected": 0}
    empty = staff.post(f"/admin/streams/stream/{stream.pk}/preview/", {"records": "[]"})
    assert empty.context["result"] is None
    assert "Give 1 to 1000 records." in empty.content.decode()


def test_the_preview_of_a_tagged_version_runs_that_version(staff, account, solution, stream):
    changed = example("api-calls-metering") | {"tag": "v2"}
    next(node for node in changed["nodes"] if node["id"] == "only-billable")["config"]["conditions"] = [
        {"field": "status", "type": "number", "operator": "lessThan", "value": 600}
    ]
    services.stream_import(
        account=account,
        solution_id=solution.pk,
        actor=ACTOR,
        on_name_conflict="overwrite",
        stream_config=changed,
    )
    v1 = stream.versions.get(tag="v1")
    record = {
        "requestId": "r9",
        "status": 503,
        "internal": True,
        "path": "/internal",
        "customer": {"id": "c-2"},
    }
    latest = staff.post(f"/admin/streams/stream/{stream.pk}/preview/", {"records": json.dumps(record)})
    older = staff.post(
        f"/admin/streams/stream/{stream.pk}/preview/", {"records": json.dumps(record), "version": str(v1.pk)}
    )
    assert latest.context["result"].result_for("only-billable").counts()["out"] == 1
    assert older.context["result"].result_for("only-billable").counts()["out"] == 0
    assert older.context["previewed"].tag == "v1"
    assert '<p id="preview-counts">Version v1: <strong>1</strong> record in' in older.content.decode()


def test_created_and_updated_by_name_the_application_access_not_its_client_id(
    staff, account, solution, other_account
):
    access, _ = account_services.application_access_create(
        account=account, name="ci-pipeline", scopes=["all"]
    )
    theirs, _ = account_services.application_access_create(
        account=other_account, name="globex-ci", scopes=["all"]
    )
    stream = services.stream_import(
        account=account,
        solution_id=solution.pk,
        actor={"type": "client", "id": access.client_id},
        stream_config=minimal_config("By the pipeline"),
    ).stream
    services.stream_import(
        account=account,
        solution_id=solution.pk,
        actor={"type": "client", "id": theirs.client_id},  # another account's client: its id only
        on_name_conflict="overwrite",
        stream_config=minimal_config("By the pipeline"),
    )
    page = staff.get(f"/admin/streams/stream/{stream.pk}/change/").content.decode()
    assert "ci-pipeline (Application Access)" in page
    assert f"{theirs.client_id} (Application Access)" in page and "globex-ci" not in page


def test_consumer_offsets_and_periodic_tasks_name_their_stream(client, account, solution):
    from collection import services as collection_services

    get_user_model().objects.create_superuser(username="root", password="pw-12345678")
    client.login(username="root", password="pw-12345678")
    collector = collection_services.collector_create(account_id=account.pk, name="gateway")
    in_node = {
        "id": "in",
        "name": "In",
        "type": "onlineCollector",
        "config": {"collectorId": str(collector.pk)},
    }
    realtime = services.stream_import(
        account=account,
        solution_id=solution.pk,
        actor=ACTOR,
        stream_config=minimal_config("Live usage", processingType="realtime")
        | {"nodes": [in_node, minimal_config()["nodes"][1]]},
    ).stream
    batch = services.stream_import(
        account=account,
        solution_id=solution.pk,
        actor=ACTOR,
        stream_config=minimal_config("Nightly usage", processingType="batch"),
    ).stream

    offsets = client.get("/admin/collection/consumeroffset/").content.decode()
    assert f'<a href="/admin/streams/stream/{realtime.pk}/change/">Live usage</a>' in offsets
    tasks = client.get("/admin/django_celery_beat/periodictask/").content.decode()
    assert f'<a href="/admin/streams/stream/{batch.pk}/change/">Nightly usage</a>' in tasks
