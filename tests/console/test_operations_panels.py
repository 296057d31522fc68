"""The dashboard's operations panels: collectors with their intake rate, stream runs with errors and
the data-correction backlog, each for the account shown only."""

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from collection import services as collection_services
from console import selectors
from metering.ledger import UsageInput, usage_apply
from streams import services as stream_services
from streams.engine import services as engine_services
from streams.models import Stream, StreamRun
from tests.console.conftest import make_type, staff_of
from tests.console.test_dashboard import panel, panel_ids
from tests.streams.conftest import ACTOR
from tests.streams.engine.conftest import chain

pytestmark = pytest.mark.django_db

NOW = datetime(2027, 1, 10, 12, 7, 30, tzinfo=UTC)


@pytest.fixture(autouse=True)
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield


def collector(account, name: str):
    made = collection_services.collector_create(account_id=account.pk, name=name)
    collection_services.collector_provision(collector_id=made.pk)
    return made


def batch(account, target, payload, *, minutes_ago: float) -> None:
    collection_services.collected_batch_append(
        account_id=account.pk,
        collector_id=target.pk,
        payload=json.dumps(payload),
        received_at=NOW - timedelta(minutes=minutes_ago),
    )


def test_intake_per_collector_and_minute_counts_batches_records_and_bytes(account, other_account):
    gateway = collector(account, "gateway")
    collector(account, "billing")
    theirs = collector(other_account, "gateway")
    batch(account, gateway, [{"a": 1}, {"a": 2}, {"a": 3}], minutes_ago=0.2)  # the current minute (12:07)
    batch(account, gateway, {"a": 1}, minutes_ago=1)  # 12:06
    batch(account, gateway, '{"a": 1}\n\n{"b": 2}\n', minutes_ago=1)  # NDJSON: two records
    batch(account, gateway, {"old": True}, minutes_ago=15)  # 11:52:30, outside 15 minutes
    batch(other_account, theirs, [{"x": 1}] * 50, minutes_ago=1)

    intake = selectors.collectors_with_intake(account.pk, minutes=15, now=NOW)

    assert [item.collector.name for item in intake] == ["billing", "gateway"]
    billing_intake, gateway_intake = intake
    assert gateway_intake.minutes[0] == datetime(2027, 1, 10, 11, 53, tzinfo=UTC)
    assert gateway_intake.minutes[-1] == datetime(2027, 1, 10, 12, 7, tzinfo=UTC)
    assert (gateway_intake.batches[-2:], gateway_intake.records[-2:]) == ((2, 1), (3, 3))
    assert sum(gateway_intake.batches) == 3 and sum(gateway_intake.records) == 6
    assert sum(gateway_intake.bytes) == (
        len(json.dumps([{"a": 1}, {"a": 2}, {"a": 3}]))
        + len(json.dumps({"a": 1}))
        + len(json.dumps('{"a": 1}\n\n{"b": 2}\n'))
    )
    # 14.5 minutes of the window have passed (11:53:00 to 12:07:30).
    assert gateway_intake.elapsed_minutes == 14.5
    assert gateway_intake.records_per_minute == 6 / 14.5
    assert (sum(billing_intake.batches), billing_intake.records_per_minute) == (0, 0)


def test_the_collectors_panel_shows_rates_and_a_chart_of_records_per_minute(client, account, other_account):
    client.force_login(staff_of(account, "ann"))
    assert "No collectors yet." in panel(client.get("/admin/").content.decode(), "collectors")
    gateway = collector(account, "gateway")
    collector(other_account, "globex-gateway")
    for index in range(30):
        batch(account, gateway, [{"n": index}] * 10, minutes_ago=index / 3)  # 30 batches over 10 minutes

    page = client.get("/admin/").content.decode()
    collectors = panel(page, "collectors")
    assert re.findall(r'data-collector="([^"]+)"', collectors) == ["gateway"]
    # 30 batches and 300 records in the 14.5 minutes elapsed of the 15-minute window.
    assert '<td class="console-number console-batches-rate">2.1</td>' in collectors
    assert '<td class="console-number console-records-rate">20.7</td>' in collectors
    assert '<td class="console-number console-batches-total">30</td>' in collectors
    assert re.findall(r'class="point" data-label="(\d\d:\d\d)" data-value="(\d+)"', collectors)[-4:] == [
        ("12:04", "30"),
        ("12:05", "30"),
        ("12:06", "30"),
        ("12:07", "20"),
    ]  # 12:07 is still filling up
    assert "globex" not in page


@pytest.fixture
def runs(account, other_account, settings):
    settings.OUTBOUND_ALLOW_PRIVATE_TARGETS = True
    solution = stream_services.solution_create(account=account, name="Production")
    failing = stream_services.stream_import(
        account=account,
        solution_id=solution.pk,
        actor=ACTOR,
        stream_config=chain(("out", "httpForwarder", {"url": "{{param:billing/url}}"}), name="Forward"),
    ).stream
    rejecting = stream_services.stream_import(
        account=account,
        solution_id=solution.pk,
        actor=ACTOR,
        stream_config=chain(("peek", "inspect", {}), name="Peek"),
    ).stream
    # Its stored configuration names a node type this version no longer has: every run fails.
    Stream.objects.filter(pk=failing.pk).update(
        nodes=[*failing.nodes[:1], {**failing.nodes[1], "type": "retiredExport"}]
    )
    foreign_solution = stream_services.solution_create(account=other_account, name="Globex")
    foreign = stream_services.stream_import(
        account=other_account,
        solution_id=foreign_solution.pk,
        actor=ACTOR,
        stream_config=chain(("out", "httpForwarder", {"url": "{{param:nowhere}}"}), name="Globex forward"),
    ).stream
    Stream.objects.filter(pk=foreign.pk).update(
        nodes=[{**node, "type": "retiredExport"} for node in foreign.nodes]
    )
    with time_machine.travel(NOW - timedelta(hours=30), tick=False):  # before the counts' 24 hours
        engine_services.stream_run_execute(stream_id=failing.pk, records=[{"a": 0}])
    with time_machine.travel(NOW - timedelta(minutes=5), tick=False):
        engine_services.stream_run_execute(stream_id=failing.pk, records=[{"a": 1}])
    with time_machine.travel(NOW - timedelta(minutes=2), tick=False):
        engine_services.stream_run_execute(stream_id=rejecting.pk, records=[{"a": 1}, "text", 7])
        engine_services.stream_run_execute(stream_id=rejecting.pk, records=[{"a": 2}])  # clean: not listed
    engine_services.stream_run_execute(stream_id=foreign.pk, records=[{"a": 1}])
    return failing, rejecting


def test_stream_runs_with_errors_are_failed_runs_and_runs_that_rejected_records(account, runs):
    failing, rejecting = runs
    listed = list(selectors.stream_runs_with_errors(account.pk))
    assert [(run.stream.name, run.status, run.records_rejected) for run in listed] == [
        ("Peek", "SUCCEEDED", 2),
        ("Forward", "FAILED", 0),
        ("Forward", "FAILED", 0),
    ]
    counts = selectors.stream_run_error_counts(account.pk, now=NOW)
    assert (counts.failed, counts.with_rejections, counts.rejected_records) == (1, 1, 2)


def test_the_stream_runs_panel_links_each_run_with_its_error(client, account, runs):
    client.force_login(staff_of(account, "ann"))
    page = client.get("/admin/").content.decode()
    runs_panel = panel(page, "stream_runs")
    failed = StreamRun.objects.filter(stream=runs[0], status="FAILED").order_by("-started_at").first()
    assert f'<a href="/admin/streams/streamrun/{failed.pk}/change/">2027-01-10 12:02:30</a>' in runs_panel
    assert "node out: : Unknown node type &#x27;retiredExport&#x27;." in runs_panel
    assert "<code>in</code>: a record must be a JSON object" in runs_panel
    assert re.findall(r'data-status="([A-Z]+)"', runs_panel) == ["SUCCEEDED", "FAILED", "FAILED"]
    assert 'id="console-failed-runs">1<' in runs_panel
    assert "Globex" not in page
    assert client.get(f"/admin/streams/streamrun/{failed.pk}/change/").status_code == 200
    with_errors = client.get("/admin/streams/streamrun/?errors=any").context["cl"].result_list
    assert [(run.stream.name, run.status) for run in with_errors] == [
        ("Peek", "SUCCEEDED"),
        ("Forward", "FAILED"),
        ("Forward", "FAILED"),
    ]
    rejected = client.get("/admin/streams/streamrun/?errors=rejected").context["cl"].result_list
    assert [run.stream.name for run in rejected] == ["Peek"]


def refuse(account, meter_type, *keys_and_users):
    records = [
        UsageInput(user_id=user, value=1, timestamp=None, meter_type_id=meter_type.pk, idempotency_key=key)
        for key, user in keys_and_users
    ]
    result = usage_apply(account_id=account.pk, records=records, source="api")
    assert result.corrections == len(records)


def test_the_correction_backlog_counts_open_records_per_reason(client, account, other_account):
    calls = make_type(account, name="Calls", since=NOW - timedelta(days=1))
    with time_machine.travel(NOW - timedelta(hours=3), tick=False):
        refuse(account, calls, ("k1", "nobody"), ("k2", None))
    refuse(account, calls, ("k3", "nobody-either"), ("k4", "still-nobody"))
    refuse(
        other_account, make_type(other_account, name="Theirs", since=NOW - timedelta(days=1)), ("x", "nobody")
    )

    backlog = selectors.correction_backlog(account.pk)
    assert [(row["reason"], row["count"]) for row in backlog.by_reason] == [
        ("NO_MATCHING_METER", 3),
        ("MISSING_USER_ID", 1),
    ]
    assert (backlog.total, backlog.oldest_at) == (4, NOW - timedelta(hours=3))

    client.force_login(staff_of(account, "ann"))
    corrections = panel(client.get("/admin/").content.decode(), "data_corrections")
    assert 'id="console-correction-count">4<' in corrections
    assert re.findall(r'data-reason="([A-Z_]+)"', corrections) == ["NO_MATCHING_METER", "MISSING_USER_ID"]
    link = re.search(
        r'href="(/admin/metering/datacorrection/\?status__exact=OPEN&amp;reason__exact=MISSING_USER_ID)"',
        corrections,
    ).group(1)
    listed = client.get(link.replace("&amp;", "&"))
    assert [c.idempotency_key for c in listed.context["cl"].result_list] == ["k2"]


def test_operations_panels_follow_their_permissions(client, account):
    client.force_login(staff_of(account, "ann", apps=("collection",)))
    assert panel_ids(client.get("/admin/").content.decode()) == ["collectors"]
    client.force_login(staff_of(account, "bob", apps=("streams",)))
    assert panel_ids(client.get("/admin/").content.decode()) == ["streams", "stream_health", "stream_runs"]


def test_the_stream_health_panel_lists_the_least_healthy_first_with_errors_collapsed(client, account, runs):
    client.force_login(staff_of(account, "ann"))
    health = panel(client.get("/admin/").content.decode(), "stream_health")
    rows = re.findall(r'<tr data-stream="([^"]+)" data-state="([a-z ]+)">(.*?)</tr>', health, flags=re.S)
    assert [(name, state) for name, state, _ in rows] == [("Forward", "failing"), ("Peek", "healthy")]
    assert "Unknown node type &#x27;retiredExport&#x27;." in rows[0][2]
    assert '<span class="console-error-count">×2</span>' in rows[0][2]
    assert "Globex" not in health
