"""The operator UI: secret shown once, tenancy, failed deliveries visible with attempts, retry now."""

import re

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django_celery_beat.models import PeriodicTask

from accounts import services as account_services
from notifications import services
from notifications.models import Delivery, NotificationEndpoint
from tests.notifications.conftest import Answer

pytestmark = pytest.mark.django_db

PUBLIC = "https://93.184.215.14/hooks/usage"


def staff_of(account, username):
    # No password: hashing one costs ~0.4 s here, and force_login needs none.
    user = get_user_model().objects.create_user(username=username, password=None, is_staff=True)
    user.user_permissions.set(Permission.objects.filter(content_type__app_label="notifications"))
    account_services.account_user_link(user=user, account=account)
    return user


@pytest.fixture
def ann(client, account):
    client.force_login(staff_of(account, "ann"))
    return client


def add_endpoint(client, url=PUBLIC, follow=False):
    return client.post(
        "/admin/notifications/notificationendpoint/add/",
        {
            "url": url,
            "description": "from the admin",
            "event_types": ["threshold.crossed"],
            "is_active": "on",
        },
        follow=follow,
    )


def test_creating_an_endpoint_shows_its_secret_once(ann, account, refuse_private):
    response = add_endpoint(ann)
    # Redirect after POST: the secret is on the page the redirect leads to, once.
    assert (response.status_code, response["Location"]) == (
        303,
        "/admin/notifications/notificationendpoint/secret/",
    )
    response = ann.get(response["Location"])
    assert response.status_code == 200
    shown = re.search(
        r'<code id="endpoint-secret">(whsec_[A-Za-z0-9+/=]+)</code>', response.content.decode()
    ).group(1)
    endpoint = NotificationEndpoint.objects.get(account=account)
    assert (endpoint.url, endpoint.event_types, endpoint.description) == (
        PUBLIC,
        ["threshold.crossed"],
        "from the admin",
    )
    assert services.notification_endpoint_secret(endpoint=endpoint) == shown
    reloaded = ann.get("/admin/notifications/notificationendpoint/secret/").content.decode()
    assert 'id="secret-gone"' in reloaded
    assert shown not in reloaded

    change_page = ann.get(f"/admin/notifications/notificationendpoint/{endpoint.pk}/change/").content.decode()
    assert 'id="endpoint-secret"' not in change_page
    assert shown not in change_page
    assert "secret_encrypted" not in change_page
    assert shown not in ann.get("/admin/notifications/notificationendpoint/").content.decode()


def test_a_private_url_is_a_form_error_in_the_admin(ann, refuse_private):
    response = add_endpoint(ann, url="http://169.254.169.254/latest/meta-data/")
    assert response.status_code == 200
    assert "169.254.169.254 is not a public address" in response.content.decode()
    assert NotificationEndpoint.objects.count() == 0


def test_the_endpoint_limit_is_a_message_not_an_error_page(ann, settings, refuse_private):
    settings.NOTIFICATION_ENDPOINTS_MAX_PER_ACCOUNT = 1
    add_endpoint(ann)
    response = add_endpoint(ann, follow=True)
    assert response.status_code == 200
    assert "at most 1 notification endpoints" in response.content.decode()
    assert NotificationEndpoint.objects.count() == 1


def test_editing_an_endpoint_goes_through_the_service(ann, account, refuse_private):
    endpoint, secret = services.notification_endpoint_create(
        account=account, url=PUBLIC, event_types=["meter.flushed"]
    )
    response = ann.post(
        f"/admin/notifications/notificationendpoint/{endpoint.pk}/change/",
        {
            "url": "https://8.8.8.8/new",
            "description": "moved",
            "event_types": ["meter.flushed", "threshold.crossed"],
        },
    )
    assert response.status_code == 302
    endpoint.refresh_from_db()
    assert (endpoint.url, endpoint.description, endpoint.is_active, endpoint.event_types) == (
        "https://8.8.8.8/new",
        "moved",
        False,
        ["meter.flushed", "threshold.crossed"],
    )
    assert services.notification_endpoint_secret(endpoint=endpoint) == secret  # untouched by the form


def test_staff_see_only_their_accounts_endpoints_and_deliveries(ann, account, other_account, allow_private):
    mine, _ = services.notification_endpoint_create(
        account=account, url="http://127.0.0.1:9/mine", event_types=["meter.flushed"]
    )
    theirs, _ = services.notification_endpoint_create(
        account=other_account, url="http://127.0.0.1:9/theirs", event_types=["meter.flushed"]
    )
    services.notification_publish(account_id=account.pk, event_type="meter.flushed", payload={"v": 1})
    services.notification_publish(account_id=other_account.pk, event_type="meter.flushed", payload={"v": 2})
    foreign_delivery = Delivery.objects.get(endpoint=theirs)

    endpoints_page = ann.get("/admin/notifications/notificationendpoint/").content.decode()
    assert "/mine" in endpoints_page and "/theirs" not in endpoints_page
    deliveries_page = ann.get("/admin/notifications/delivery/").content.decode()
    assert "/mine" in deliveries_page and "/theirs" not in deliveries_page
    assert ann.get(f"/admin/notifications/delivery/{foreign_delivery.pk}/change/").status_code == 302
    assert ann.get(f"/admin/notifications/notificationendpoint/{theirs.pk}/change/").status_code == 302
    assert mine.pk != theirs.pk


def test_failed_deliveries_are_filterable_show_each_attempt_and_can_be_retried_now(
    ann, account, receiver_factory, allow_private, fast_webhooks, django_capture_on_commit_callbacks
):
    fast_webhooks.WEBHOOK_MAX_ATTEMPTS = 2
    receiver = receiver_factory([Answer(500), Answer(502), Answer(200)])
    endpoint, _ = services.notification_endpoint_create(
        account=account, url=receiver.url, event_types=["threshold.crossed", "meter.flushed"]
    )
    services.notification_publish(account_id=account.pk, event_type="threshold.crossed", payload={"v": 1})
    services.delivery_sweep_due()
    services.delivery_sweep_due()
    failed = Delivery.objects.get()
    assert failed.status == "FAILED"

    listing = ann.get("/admin/notifications/delivery/?status__exact=FAILED").content.decode()
    assert str(failed.pk) in listing
    assert (
        str(failed.pk)
        not in ann.get("/admin/notifications/delivery/?status__exact=SUCCEEDED").content.decode()
    )
    detail = ann.get(f"/admin/notifications/delivery/{failed.pk}/change/").content.decode()
    assert "HTTP 500" in detail and "HTTP 502" in detail

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        response = ann.post(
            "/admin/notifications/delivery/",
            {"action": "retry_now", "_selected_action": [str(failed.pk)]},
            follow=True,
        )
    assert "Retrying 1 delivery(ies) now." in response.content.decode()
    assert len(callbacks) == 1
    failed.refresh_from_db()
    assert (failed.status, failed.max_attempts) == ("PENDING", 4)
    services.delivery_sweep_due()
    failed.refresh_from_db()
    assert (failed.status, failed.attempt_count, failed.last_status_code) == ("SUCCEEDED", 3, 200)


def test_events_are_listed_read_only_with_their_deliveries(ann, account, allow_private):
    services.notification_endpoint_create(
        account=account, url="http://127.0.0.1:9/x", event_types=["meter.flushed"]
    )
    event = services.notification_publish(account_id=account.pk, event_type="meter.flushed", payload={"v": 1})
    assert str(event.pk) in ann.get("/admin/notifications/notificationevent/").content.decode()
    assert (
        "http://127.0.0.1:9/x"
        in ann.get(f"/admin/notifications/notificationevent/{event.pk}/change/").content.decode()
    )
    assert ann.get("/admin/notifications/notificationevent/add/").status_code == 403


def test_the_retry_sweep_is_registered_in_celery_beat_by_a_migration():
    task = PeriodicTask.objects.get(name="notifications: retry sweep")
    assert (task.task, task.enabled, task.interval.every, task.interval.period) == (
        "notifications.sweep_due_deliveries",
        True,
        30,
        "seconds",
    )
    from notifications.tasks import sweep_due_deliveries

    assert sweep_due_deliveries.name == task.task


def test_send_test_event_is_a_post_refused_for_a_disabled_endpoint_and_another_accounts(
    ann, account, other_account, refuse_private
):
    endpoint, _ = services.notification_endpoint_create(
        account=account, url=PUBLIC, event_types=["threshold.crossed"], is_active=False
    )
    theirs, _ = services.notification_endpoint_create(
        account=other_account, url=PUBLIC, event_types=["threshold.crossed"]
    )
    base = "/admin/notifications/notificationendpoint"
    assert ann.get(f"{base}/{endpoint.pk}/send-test/").status_code == 405
    page = ann.post(f"{base}/{endpoint.pk}/send-test/", follow=True).content.decode()
    assert "The endpoint is disabled: enable it to send it a test event." in page
    assert ann.post(f"{base}/{theirs.pk}/send-test/").status_code == 404
    assert Delivery.objects.count() == 0
    assert 'id="send-test-event"' in ann.get(f"{base}/{endpoint.pk}/change/").content.decode()
