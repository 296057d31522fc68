"""Resources of every kind, made through the services in a given account: one factory per resource
path of the OpenAPI schema (the tenancy sweep and the documented-status sweep use them)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from django.utils import timezone

from accounts.models import Account
from collection import services as collection_services
from metering.compat import amberflo
from metering.ledger import UsageInput, usage_apply
from notifications import services as notification_services
from notifications.models import EventType
from parameters import services as parameter_services
from streams import services as stream_services
from streams.engine import services as engine_services
from tests.metering.factories import make_meter, make_meter_type
from tests.streams.engine.conftest import chain

ACTOR = {"type": "client", "id": "reliability-tests"}


@dataclass
class Resource:
    """What a factory made in an account: the path parameters that address it, the query a call
    needs besides them, and every identifier that must never show up in another account's answers."""

    path: dict[str, str]
    query: dict[str, list[str]] = field(default_factory=dict)
    identifiers: set[str] = field(default_factory=set)


# --- Factories: one per resource path of the schema ----------------------------------------------


def _unique() -> str:
    return uuid.uuid4().hex[:8]


def _meter_type(account: Account) -> Resource:
    meter_type = make_meter_type(account, name=f"Tenancy {_unique()}", external_ref=f"ref-{_unique()}")
    return Resource(path={"id": str(meter_type.pk)}, identifiers={str(meter_type.pk)})


def _meter(account: Account) -> Resource:
    meter_type = make_meter_type(account, name=f"Metered {_unique()}")
    meter = make_meter(meter_type, user_id=f"user-{_unique()}@example.com")
    return Resource(path={"id": str(meter.pk)}, identifiers={str(meter.pk), str(meter_type.pk)})


def _notification_endpoint(account: Account) -> Resource:
    # A public IP literal: registered without DNS, never called by these tests.
    endpoint, _secret = notification_services.notification_endpoint_create(
        account=account, url=f"https://93.184.215.14/hooks/{_unique()}", event_types=EventType.values
    )
    return Resource(path={"id": str(endpoint.pk)}, identifiers={str(endpoint.pk)})


def _parameter(account: Account) -> Resource:
    name = f"tenancy/{_unique()}/api-key"
    parameter_services.parameter_create(account=account, name=name, type="standard", value="tenant-value")
    return Resource(path={"name": name}, identifiers={name})


def _stream(account: Account) -> Resource:
    solution = stream_services.solution_create(account=account, name=f"Solution {_unique()}")
    config = chain(("count", "meter", {"meterKey": f"key-{_unique()}"}), name=f"Stream {_unique()}")
    config["tag"] = "v1"
    stream = stream_services.stream_import(
        account=account, solution_id=str(solution.pk), stream_config=config, actor=ACTOR
    ).stream
    return Resource(path={"id": str(stream.pk)}, identifiers={str(stream.pk), str(solution.pk)})


def _aggregation_session(account: Account) -> Resource:
    store_id = str(uuid.uuid4())
    solution = stream_services.solution_create(account=account, name=f"Sessions {_unique()}")
    config = chain(
        (
            "sessions",
            "scriptAggregator",
            {
                "storeId": store_id,
                "keyFields": ["chargerId"],
                "timeoutSeconds": 3600,
                "script": "{'kwh': (has(session.kwh) ? session.kwh : 0.0) + record.kwh}",
            },
        ),
        name=f"Sessions {_unique()}",
    )
    stream = stream_services.stream_import(
        account=account, solution_id=str(solution.pk), stream_config=config, actor=ACTOR
    ).stream
    engine_services.stream_run_execute(stream_id=stream.pk, records=[{"chargerId": "c1", "kwh": 2.5}])
    return Resource(
        path={"id": store_id}, query={"fieldValues": ["c1"]}, identifiers={store_id, str(stream.pk)}
    )


def _data_correction(account: Account) -> Resource:
    """A record without a user id: the ledger keeps it OPEN in data correction."""
    meter_type = make_meter_type(account, name=f"Corrected {_unique()}")
    result = usage_apply(
        account_id=account.pk,
        source="api",
        records=[UsageInput(user_id=None, value=1, timestamp=timezone.now(), meter_type_id=meter_type.pk)],
    )
    correction_id = str(result.results[0].correction_id)
    return Resource(path={"id": correction_id}, identifiers={correction_id, str(meter_type.pk)})


def _meter_definition(account: Account) -> Resource:
    api_name = f"tenancy-{_unique()}"
    meter_type = amberflo.meter_definition_create(
        account_id=account.pk,
        meter_api_name=api_name,
        display_name=f"Definition {_unique()}",
        kind=amberflo.SUM_OF_ALL_USAGE,
    )
    rule = amberflo.filtering_rule_save(
        account_id=account.pk,
        meter_api_name=api_name,
        dimension_name="region",
        dimension_values=["eu"],
        action="INCLUDE",
    )
    return Resource(path={"meterApiName": api_name}, identifiers={api_name, str(meter_type.pk), str(rule.pk)})


def _billing_meter(account: Account) -> Resource:
    meter_type = make_meter_type(account, name=f"Billed {_unique()}")
    return Resource(path={"meterId": str(meter_type.pk)}, identifiers={str(meter_type.pk)})


def _collector(account: Account) -> Resource:
    collector = collection_services.collector_create(account_id=account.pk, name=f"Collector {_unique()}")
    collection_services.collector_provision(
        collector_id=collector.pk
    )  # what the task does: ACTIVE, takes data
    return Resource(path={"id": str(collector.pk)}, identifiers={str(collector.pk)})


FACTORIES: dict[str, Callable[[Account], Resource]] = {
    "/meter-types/{id}": _meter_type,
    "/meters/{id}": _meter,
    "/meters/{id}/records": _meter,
    "/notification-endpoints/{id}": _notification_endpoint,
    "/notification-endpoints/{id}/deliveries": _notification_endpoint,
    "/parameters/{name}": _parameter,
    "/streams/{id}": _stream,
    "/streams/{id}/export": _stream,
    "/streams/{id}/versions": _stream,
    "/streams/{id}/preview": _stream,
    "/streams/{id}/deliveries": _stream,
    "/streams/{id}/health": _stream,
    "/aggregation/stores/{id}/sessions/lookup": _aggregation_session,
    "/data-corrections/{id}": _data_correction,
    "/data-corrections/{id}/reprocess": _data_correction,
    "/meter-definition/{meterApiName}": _meter_definition,
    "/billing/meters/{meterId}/subscriptions": _billing_meter,
    "/online-collection/collectors/{id}": _collector,
    "/online-collection/collectors/{id}/data": _collector,
}


def resource_url(template: str, resource: Resource) -> str:
    url = template
    for name, value in resource.path.items():
        url = url.replace("{" + name + "}", value)
    return url
