"""The engine in the admin: runs per stream with per-node counts, sessions per store, inspected
records; each account sees its own."""

import datetime
import re

import pytest
import time_machine
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.utils import timezone

from accounts import services as account_services
from streams import services
from streams.engine import flushes
from streams.engine import services as engine_services
from streams.models import AggregationSession, AggregationStore, StreamRun
from tests.streams.conftest import ACTOR
from tests.streams.engine.conftest import STORE_ID, chain

pytestmark = pytest.mark.django_db

SESSIONS = chain(
    (
        "sessions",
        "scriptAggregator",
        {
            "storeId": STORE_ID,
            "keyFields": ["customer", "order"],
            "timeoutSeconds": 600,
            "script": "{'n': 1}",
        },
    ),
    ("peek", "inspect", {}),
    name="Orders",
)


@pytest.fixture(autouse=True)
def _fast_password_hashing(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher", *settings.PASSWORD_HASHERS]


@pytest.fixture
def staff(client, account):
    user = get_user_model().objects.create_user(username="ann", password="pw-12345678", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="streams"))
    account_services.account_user_link(user=user, account=account)
    client.login(username="ann", password="pw-12345678")
    return client


@pytest.fixture
def ours(make_stream):
    stream = make_stream(SESSIONS)
    engine_services.stream_run_execute(
        stream_id=stream.pk, records=[{"customer": "acme-c1", "order": "o1"}, {"customer": "acme-c2"}]
    )
    return stream


@pytest.fixture
def theirs(other_account):
    solution = services.solution_create(account=other_account, name="Globex")
    stream = services.stream_import(
        account=other_account,
        solution_id=solution.pk,
        actor=ACTOR,
        stream_config=SESSIONS | {"name": "Globex orders"},
    ).stream
    engine_services.stream_run_execute(
        stream_id=stream.pk, records=[{"customer": "globex-c9", "order": "o9"}]
    )
    return stream


def test_runs_list_with_filters_and_a_run_page_with_per_node_counts(staff, ours, theirs):
    page = staff.get("/admin/streams/streamrun/").content.decode()
    assert "Orders" in page and "Globex orders" not in page
    assert "?status__exact=FAILED" in page and "?trigger__exact=manual" in page
    run = StreamRun.objects.get(stream=ours)
    detail = staff.get(f"/admin/streams/streamrun/{run.pk}/change/").content.decode()
    assert (
        '<tr class="node-counts" data-node-id="sessions"><td>sessions</td><td>Sessions</td><td>2</td><td>0</td>'
        "<td>1</td></tr>" in detail
    )
    assert "key field order is missing" in detail
    foreign = StreamRun.objects.get(stream=theirs)
    assert staff.get(f"/admin/streams/streamrun/{foreign.pk}/change/").status_code == 302
    filtered = staff.get(f"/admin/streams/streamrun/?status__exact=SUCCEEDED&stream__id__exact={ours.pk}")
    assert filtered.status_code == 200 and "1 stream run" in filtered.content.decode()


def test_the_stream_page_shows_recent_runs(staff, ours):
    page = staff.get(f"/admin/streams/stream/{ours.pk}/change/").content.decode()
    assert "<td>manual</td><td>SUCCEEDED</td><td>2</td><td>0</td><td>1</td>" in page
    assert f"/admin/streams/streamrun/?stream__id__exact={ours.pk}" in page
    run = StreamRun.objects.get(stream=ours)
    assert f'<a href="/admin/streams/streamrun/{run.pk}/change/">' in page  # each run links to its page


def test_sessions_per_store_and_the_time_out_action(staff, ours, theirs, account):
    store = AggregationStore.objects.get(account=account)
    stores = staff.get("/admin/streams/aggregationstore/").content.decode()
    assert "customer, order" in stores and "1 session(s)" in stores
    sessions = staff.get(f"/admin/streams/aggregationsession/?store__id__exact={store.pk}").content.decode()
    assert "&quot;acme-c1&quot; / &quot;o1&quot;" in sessions and "globex" not in sessions
    session = AggregationSession.objects.get(account=account)
    with time_machine.travel(timezone.now() + datetime.timedelta(seconds=5), tick=False):
        response = staff.post(
            "/admin/streams/aggregationsession/", {"action": "time_out_now", "_selected_action": [session.pk]}
        )
        assert response.status_code == 302
        session.refresh_from_db()
        assert session.timeout_at <= timezone.now()
        assert engine_services.session_timeouts_sweep().sessions_emitted == 1
    assert AggregationSession.objects.filter(account=account).count() == 0
    assert AggregationSession.objects.count() == 1  # the other account's session is untouched


def test_inspected_records_per_node(staff, ours, theirs):
    with time_machine.travel(timezone.now() + datetime.timedelta(minutes=11), tick=False):
        assert engine_services.session_timeouts_sweep().sessions_emitted == 2  # one per account
    page = staff.get("/admin/streams/inspectrecord/").content.decode()
    assert "acme-c1" in page and "globex-c9" not in page
    assert "?node_id=peek" in page


def test_engine_rows_are_read_only_in_the_admin(staff, ours):
    run = StreamRun.objects.get(stream=ours)
    assert staff.get("/admin/streams/streamrun/add/").status_code == 403
    assert staff.post(f"/admin/streams/streamrun/{run.pk}/delete/", {"post": "yes"}).status_code == 403
    assert StreamRun.objects.filter(pk=run.pk).exists()


def test_flush_deliveries_waiting_in_the_outbox_with_a_retry_now_action(staff, ours, theirs):
    from streams.models import FlushDelivery

    later = timezone.now() + datetime.timedelta(minutes=5)
    waiting = flushes.flushed_records_queue(
        stream=ours, node_id="sessions", records=[{"userId": "acme-u1", "value": 3}]
    )
    flushes.flushed_records_queue(stream=theirs, node_id="sessions", records=[{"userId": "globex-u9"}])
    FlushDelivery.objects.update(
        attempts=2, last_error="node peek: the target answered HTTP 503", next_attempt_at=later
    )
    page = staff.get("/admin/streams/flushdelivery/").content.decode()
    assert "Orders" in page and "Globex orders" not in page and "the target answered HTTP 503" in page
    assert "acme-u1" in staff.get(f"/admin/streams/flushdelivery/{waiting.pk}/change/").content.decode()
    staff.post("/admin/streams/flushdelivery/", {"action": "retry_now", "_selected_action": [waiting.pk]})
    assert FlushDelivery.objects.get(pk=waiting.pk).next_attempt_at < later
    assert FlushDelivery.objects.get(stream=theirs).next_attempt_at == later
    assert (
        staff.post(f"/admin/streams/flushdelivery/{waiting.pk}/delete/", {"post": "yes"}).status_code == 403
    )


def test_output_deliveries_with_dead_letters_and_a_retry_now_action(
    staff, make_stream, other_account, receiver, private_targets_allowed, settings
):
    from streams.engine import deliveries
    from streams.models import OutputDelivery

    settings.STREAM_OUTPUT_MAX_ATTEMPTS = 1
    receiver.status = 503
    forward = chain(("out", "httpForwarder", {"url": receiver.url}), name="Forward")
    ours = make_stream(forward)
    solution = services.solution_create(account=other_account, name="Globex")
    theirs = services.stream_import(
        account=other_account,
        solution_id=solution.pk,
        actor=ACTOR,
        stream_config=forward | {"name": "Globex fwd"},
    ).stream
    engine_services.stream_run_execute(stream_id=ours.pk, records=[{"customer": "acme-c1"}])
    engine_services.stream_run_execute(stream_id=theirs.pk, records=[{"customer": "globex-c9"}])
    deliveries.output_deliveries_send(stream_id=ours.pk, node_id="out")
    dead = OutputDelivery.objects.get(stream=ours)
    assert dead.status == "DEAD"

    page = staff.get("/admin/streams/outputdelivery/?status__exact=DEAD").content.decode()
    assert "Forward" in page and "Globex fwd" not in page and "the target answered HTTP 503" in page
    detail = staff.get(f"/admin/streams/outputdelivery/{dead.pk}/change/").content.decode()
    assert "acme-c1" in detail and str(dead.delivery_id) in detail
    assert (
        staff.get(
            f"/admin/streams/outputdelivery/{OutputDelivery.objects.get(stream=theirs).pk}/change/"
        ).status_code
        == 302
    )

    receiver.status = 200
    staff.post("/admin/streams/outputdelivery/", {"action": "retry_now", "_selected_action": [dead.pk]})
    dead.refresh_from_db()
    assert (dead.status, dead.max_attempts) == ("PENDING", 2)
    assert deliveries.output_deliveries_send(stream_id=ours.pk, node_id="out").delivered == 1
    assert staff.post(f"/admin/streams/outputdelivery/{dead.pk}/delete/", {"post": "yes"}).status_code == 403


def test_the_stream_list_and_page_show_health_with_repeated_errors_collapsed(staff, make_stream, theirs):
    from streams.models import Stream

    healthy = make_stream(chain(("peek", "inspect", {}), name="Calm"))
    broken = make_stream(chain(("peek", "inspect", {}), name="Broken"))
    Stream.objects.filter(pk=broken.pk).update(
        nodes=[broken.nodes[0], {**broken.nodes[1], "type": "retired"}]
    )
    for _ in range(3):
        engine_services.stream_run_execute(stream_id=broken.pk, records=[{"a": 1}])
    page = staff.get("/admin/streams/stream/").content.decode()
    assert re.findall(
        r'<th class="field-name"><a href="/admin/streams/stream/([0-9a-f-]+)/change/[^"]*">', page
    )
    states = dict(
        re.findall(
            r'<a href="/admin/streams/stream/([0-9a-f-]+)/change/[^"]*">[^<]*</a>.*?data-state="([a-z ]+)"',
            page,
            flags=re.S,
        )
    )
    assert states == {str(healthy.pk): "healthy", str(broken.pk): "failing"}
    assert "3 failed runs" in page and "Globex orders" not in page
    detail = staff.get(f"/admin/streams/stream/{broken.pk}/change/").content.decode()
    assert "consecutive failed runs: 3" in detail
    rows = re.findall(r'<tr class="stream-health-error">(.*?)</tr>', detail, flags=re.S)
    assert len(rows) == 1 and "×3" in rows[0] and "Unknown node type &#x27;retired&#x27;" in rows[0]
