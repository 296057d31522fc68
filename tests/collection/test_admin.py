"""The collection admin: collectors with their traffic, the read-only batch log, tenancy."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission

from accounts import services as account_services
from collection import services
from collection.models import CollectedBatch, Collector
from tests.collection.conftest import make_collector

pytestmark = pytest.mark.django_db

PASSWORD = "pw-12345678"


def staff_of(account, username: str):
    user = get_user_model().objects.create_user(username=username, password=PASSWORD, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="collection"))
    account_services.account_user_link(user=user, account=account)
    return user


def append(collector, value, at=None) -> CollectedBatch:
    result = services.collected_batch_append(
        account_id=collector.account_id,
        collector_id=collector.pk,
        payload=json.dumps(value).encode(),
        received_at=at,
    )
    return CollectedBatch.objects.get(ingestion_id=result.ingestion_id)


@pytest.fixture
def staff_client(client, account):
    staff_of(account, "ann")
    client.login(username="ann", password=PASSWORD)
    return client


def test_collector_list_shows_status_batches_bytes_and_last_batch(staff_client, account):
    collector = make_collector(account, "Traffic")
    make_collector(account, "Quiet", active=False)
    append(collector, "ab")  # 4 bytes
    append(collector, {"k": 1}, at=dt.datetime(2024, 5, 6, 7, 8, 9, tzinfo=dt.UTC))  # 8 bytes
    Collector.objects.filter(pk=collector.pk).update(pruned_batches=10, pruned_bytes=1000)

    page = staff_client.get("/admin/collection/collector/").content.decode()

    assert "Traffic" in page and "Quiet" in page
    assert '<td class="field-status">Active</td>' in page
    assert '<td class="field-status">Creating</td>' in page
    assert '<td class="field-batches_received">12</td>' in page
    assert '<td class="field-bytes_received">1012\xa0bytes</td>' in page
    assert (
        '<td class="field-last_batch_at nowrap">2024-05-06 07:08:09 UTC</td>' in page
    )  # the newest batch, in the admin's one format


def test_collector_page_shows_recent_payloads_and_consumers(staff_client, account):
    collector = make_collector(account, "Sampled")
    services.consumer_register(
        account_id=collector.account_id, collector_id=collector.pk, consumer="stream:abc"
    )
    for n in range(12):
        append(collector, {"event": n, "note": "<script>"})
    page = staff_client.get(f"/admin/collection/collector/{collector.pk}/change/").content.decode()

    assert "{&quot;event&quot;: 11, &quot;note&quot;: &quot;&lt;script&gt;&quot;}" in page  # escaped
    assert "{&quot;event&quot;: 2," in page
    assert "{&quot;event&quot;: 1," not in page  # ten most recent only
    assert "stream:abc" in page
    assert "<td>12</td>" in page  # unconsumed by stream:abc


def test_creating_and_renaming_in_the_admin_go_through_the_services(staff_client, account):
    response = staff_client.post("/admin/collection/collector/add/", {"name": "From admin"})
    assert response.status_code == 302
    collector = Collector.objects.get(name="From admin")
    assert (collector.account_id, collector.status) == (account.pk, Collector.Status.CREATING)

    invalid = staff_client.post("/admin/collection/collector/add/", {"name": "bad/name"})
    assert invalid.status_code == 200
    assert Collector.objects.count() == 1

    staff_client.post(f"/admin/collection/collector/{collector.pk}/change/", {"name": "Renamed"})
    collector.refresh_from_db()
    assert collector.name == "Renamed"


def test_the_admin_refuses_a_sixth_collector_and_a_taken_name(staff_client, account):
    for n in range(5):
        make_collector(account, f"c{n}")
    response = staff_client.post("/admin/collection/collector/add/", {"name": "sixth"})
    assert response.status_code == 200
    assert "maximum of 5 collectors" in response.content.decode()
    collector = Collector.objects.get(name="c0")
    taken = staff_client.post(f"/admin/collection/collector/{collector.pk}/change/", {"name": "c1"})
    assert "already exists" in taken.content.decode()
    assert Collector.objects.filter(name="c1").count() == 1


def test_actions_provision_and_delete_through_services(staff_client, account):
    creating = make_collector(account, "creating", active=False)
    staff_client.post(
        "/admin/collection/collector/", {"action": "provision", "_selected_action": [creating.pk]}
    )
    creating.refresh_from_db()
    assert creating.status == Collector.Status.ACTIVE
    staff_client.post(
        "/admin/collection/collector/", {"action": "delete_collectors", "_selected_action": [creating.pk]}
    )
    creating.refresh_from_db()
    assert creating.status == Collector.Status.DELETING


def test_batches_are_listed_read_only(staff_client, account):
    collector = make_collector(account, "Logged")
    batch = append(collector, {"hello": "world"})
    listing = staff_client.get("/admin/collection/collectedbatch/").content.decode()
    assert str(batch.ingestion_id) in listing
    detail = staff_client.get(f"/admin/collection/collectedbatch/{batch.pk}/change/")
    assert detail.status_code == 200
    assert "{&quot;hello&quot;: &quot;world&quot;}" in detail.content.decode()
    assert staff_client.get("/admin/collection/collectedbatch/add/").status_code == 403
    assert (
        staff_client.post(f"/admin/collection/collectedbatch/{batch.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert CollectedBatch.objects.count() == 1
    found = staff_client.get(f"/admin/collection/collectedbatch/?q={batch.ingestion_id}").content.decode()
    assert str(batch.ingestion_id) in found


def test_staff_of_one_account_sees_nothing_of_another(staff_client, account, other_account):
    mine = make_collector(account, "Mine")
    theirs = make_collector(other_account, "Theirs")
    their_batch = append(theirs, "secret payload")
    append(mine, "my payload")
    services.consumer_register(account_id=theirs.account_id, collector_id=theirs.pk, consumer="stream:theirs")

    collectors = staff_client.get("/admin/collection/collector/").content.decode()
    assert "Mine" in collectors and "Theirs" not in collectors
    assert staff_client.get(f"/admin/collection/collector/{theirs.pk}/change/").status_code == 302
    batches = staff_client.get("/admin/collection/collectedbatch/").content.decode()
    assert str(their_batch.ingestion_id) not in batches
    assert "Theirs" not in batches  # not even in the collector filter
    assert staff_client.get(f"/admin/collection/collectedbatch/{their_batch.pk}/change/").status_code == 302
    offsets = staff_client.get("/admin/collection/consumeroffset/").content.decode()
    assert "stream:theirs" not in offsets
