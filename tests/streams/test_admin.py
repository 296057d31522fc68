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
    services.stream_import(account=account, solution_id=solution.pk, actor=ACTOR,
                           stream_config=example("api-calls-metering") | {"tag": "v1"})
    return services.stream_import(account=account, solution_id=solution.pk, actor=ACTOR, on_name_conflict="overwrite",
                                  stream_config=example("api-calls-metering") | {"description": "now"}).stream


def test_adding_a_solution_puts_it_in_the_users_account(staff, account):
    response = staff.post("/admin/streams/solution/add/", {"name": "From admin"})
    assert response.status_code == 302
    assert Solution.objects.get(name="From admin").account_id == account.pk


def test_solutions_and_streams_of_another_account_are_invisible(staff, stream, other_account):
    foreign_solution = services.solution_create(account=other_account, name="Globex solution")
    foreign = services.stream_import(account=other_account, solution_id=foreign_solution.pk, actor=ACTOR,
                                     stream_config=minimal_config("Globex stream")).stream
    streams_page = staff.get("/admin/streams/stream/").content.decode()
    assert "API calls metering" in streams_page and "Globex stream" not in streams_page
    assert "Globex solution" not in streams_page  # not even in the solution filter
    assert "Globex solution" not in staff.get("/admin/streams/solution/").content.decode()
    assert staff.get(f"/admin/streams/stream/{foreign.pk}/change/").status_code == 302
    assert staff.get(f"/admin/streams/stream/{foreign.pk}/export/").status_code == 404


def test_the_stream_page_draws_the_graph_and_lists_versions(staff, stream):
    page = staff.get(f"/admin/streams/stream/{stream.pk}/change/").content.decode()
    assert page.count('<g class="node"') == 7
    assert page.count('<line class="edge"') == 6
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
    response = staff.post("/admin/streams/stream/", {"action": "export_selected", "_selected_action": [stream.pk]})
    assert json.loads(response.content)["name"] == "API calls metering"


def test_import_page_uploads_a_json_file(staff, solution, account):
    listing = staff.get("/admin/streams/stream/").content.decode()
    assert 'id="import-stream"' in listing
    assert staff.get("/admin/streams/stream/import/").status_code == 200
    upload = SimpleUploadedFile("stream.json", json.dumps(example("session-metering")).encode(),
                                content_type="application/json")
    response = staff.post("/admin/streams/stream/import/", {"solution": solution.pk, "file": upload})
    stream = Stream.objects.get(name="Charging sessions")
    assert response.status_code == 302 and response["Location"] == f"/admin/streams/stream/{stream.pk}/change/"
    assert (stream.account_id, stream.cas, stream.created_by) == (account.pk, 1, {"type": "user", "id": "ann"})


def test_import_page_shows_validation_problems_and_conflicts(staff, solution):
    bad = {"name": "Bad", "nodes": [{"id": "a", "name": "A", "type": "meter", "config": {"meterKey": "k" * 40}}]}
    page = staff.post("/admin/streams/stream/import/",
                      {"solution": solution.pk, "config_text": json.dumps(bad)}).content.decode()
    assert "<code>nodes[0].config.meterKey</code>: Expected `str` of length &lt;= 36" in page
    staff.post("/admin/streams/stream/import/", {"solution": solution.pk, "config_text": json.dumps(minimal_config())})
    page = staff.post("/admin/streams/stream/import/",
                      {"solution": solution.pk, "config_text": json.dumps(minimal_config())}).content.decode()
    assert "A stream with this name exists in the solution" in page
    response = staff.post("/admin/streams/stream/import/", {"solution": solution.pk, "on_name_conflict": "create-new",
                                                           "config_text": json.dumps(minimal_config())})
    assert response.status_code == 302
    assert sorted(Stream.objects.values_list("name", flat=True)) == ["Minimal", "Minimal (Copy)"]
    assert "Not valid JSON" in staff.post("/admin/streams/stream/import/",
                                          {"solution": solution.pk, "config_text": "{"}).content.decode()


def test_import_page_refuses_another_accounts_solution(staff, foreign_solution):
    page = staff.post("/admin/streams/stream/import/",
                      {"solution": foreign_solution.pk, "config_text": json.dumps(minimal_config())}).content.decode()
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


def test_the_meter_inspector_lists_the_meters_of_each_meter_node_with_their_values(staff, stream, account,
                                                                                 other_account):
    from metering.services import meter_create, meter_type_create

    meter_key = next(node["config"]["meterKey"] for node in stream.nodes if node["type"] == "meter")
    calls = meter_type_create(account_id=account.pk, name="Inspected calls", unit="call", aggregation="SUM",
                              reset_cron="0 0 1 * *", timezone="Etc/UTC")
    meter_create(account_id=account.pk, meter_key=meter_key, user_id="inspected-user", meter_type_id=calls.pk)
    foreign = meter_type_create(account_id=other_account.pk, name="Foreign calls", unit="call", aggregation="SUM",
                                reset_cron="0 0 1 * *", timezone="Etc/UTC")
    meter_create(account_id=other_account.pk, meter_key=meter_key, user_id="foreign-user", meter_type_id=foreign.pk)
    page = staff.get(f"/admin/streams/stream/{stream.pk}/change/").content.decode()
    assert f"meterKey {meter_key}" in page
    assert "<td>Inspected calls</td><td>inspected-user</td><td>0</td><td>0</td>" in page
    assert "foreign-user" not in page
