"""Stream names where other apps' admin pages know a stream only by the name the engine gave it
(``stream:<id>``): a collector's consumer offsets and beat's periodic tasks (one per batch stream).
The streams app knows that naming, so it adds the column by subclassing those admins here (streams
may import collection and django_celery_beat; they may not import streams). One subquery per list,
not one query per row."""

from __future__ import annotations

import uuid

from django.contrib import admin
from django.db.models import CharField, OuterRef, Subquery, Value
from django.db.models.functions import Cast, Concat
from django.urls import reverse
from django.utils.html import format_html
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

from collection.admin import CollectorAdmin, ConsumerOffsetAdmin
from collection.models import Collector, ConsumerOffset
from streams.models import Stream

ENGINE_PREFIX = "stream:"


def _with_stream(queryset, name_field: str, **same_account: object):
    """``queryset`` with the id and name of the stream whose engine name (``stream:<id>``) is each
    row's ``name_field`` (``None`` when no stream has it)."""
    streams = Stream.objects.annotate(
        engine_name=Concat(Value(ENGINE_PREFIX), Cast("id", CharField()), output_field=CharField())
    ).filter(engine_name=OuterRef(name_field), **same_account)
    return queryset.annotate(
        stream_id=Subquery(streams.values_list("id", flat=True)[:1]),
        stream_name=Subquery(streams.values_list("name", flat=True)[:1]),
    )


def _stream_link(row) -> str:
    stream_id = getattr(row, "stream_id", None)
    if stream_id is None:
        return "—"
    url = reverse("admin:streams_stream_change", args=[stream_id])
    return format_html('<a href="{}">{}</a>', url, row.stream_name)


class StreamConsumerOffsetAdmin(ConsumerOffsetAdmin):
    list_display = ["consumer_stream", *ConsumerOffsetAdmin.list_display]

    def get_queryset(self, request):
        # A stream of the collector's own account only.
        return _with_stream(
            super().get_queryset(request), "consumer", account_id=OuterRef("collector__account_id")
        )

    @admin.display(description="stream")
    def consumer_stream(self, offset: ConsumerOffset) -> str:
        return _stream_link(offset)


class StreamCollectorAdmin(CollectorAdmin):
    """A collector's page names the streams reading it (its consumers)."""

    def consumer_label(self, consumer: str, account_id) -> str:
        # A collector has a few consumers: a query for each is fine on its page.
        try:
            stream_id = (
                uuid.UUID(consumer.removeprefix(ENGINE_PREFIX))
                if consumer.startswith(ENGINE_PREFIX)
                else None
            )
        except ValueError:
            stream_id = None
        stream = Stream.objects.filter(pk=stream_id, account_id=account_id).only("id", "name").first()
        if stream is None:
            return consumer
        url = reverse("admin:streams_stream_change", args=[stream.pk])
        return format_html('<a href="{}">{}</a> <span class="quiet">({})</span>', url, stream.name, consumer)


class StreamPeriodicTaskAdmin(PeriodicTaskAdmin):
    list_display = [*PeriodicTaskAdmin.list_display[:1], "task_stream", *PeriodicTaskAdmin.list_display[1:]]

    def get_queryset(self, request):
        return _with_stream(super().get_queryset(request), "name")

    @admin.display(description="stream")
    def task_stream(self, task: PeriodicTask) -> str:
        return _stream_link(task)


for model, model_admin in (
    (ConsumerOffset, StreamConsumerOffsetAdmin),
    (Collector, StreamCollectorAdmin),
    (PeriodicTask, StreamPeriodicTaskAdmin),
):
    admin.site.unregister(model)
    admin.site.register(model, model_admin)
