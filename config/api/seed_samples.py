"""The seeds' request samples, verbatim, as the OpenAPI examples of their operations.

``config.api.schema.seed_request_examples`` (a postprocessing hook) puts each on the request body of
the operation it is keyed by (``"METHOD /path"`` as the schema spells the path); a key naming no
operation fails the schema's generation, so the table cannot go stale. Seeds 000 and 001 (Usage
Engine) print their samples in the page; seed 002 (Amberflo) carries them as its own examples; seeds
003 and 004 print none. The seeds' renderer folds nested objects to ``{}`` / ``[]``: they stay folded
here (verbatim), and the example's description says what to fill (docs/compatibility.md lists the
answers to the samples as printed). tests/config/test_openapi.py compares every sample with the
copies the contract tests replay.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FOLDED_METER_TYPE = (
    "The seed prints `aggregation` and `resetSchedule` folded (`{}`): as printed the request is 400; "
    'fill them, e.g. `"aggregation": {"type": "SUM"}` and `"resetSchedule": {"cron": "0 0 1 * *"}`.'
)
FOLDED_RESET_SCHEDULE = "The seed prints `resetSchedule` folded (`{}`): sent so, it changes nothing."
FOLDED_STREAM_CONFIG = (
    "The seed prints `streamConfig` folded (`{}`): as printed the request is 400; send a stream "
    "configuration (nodes and edges, as GET /streams/{id}/export answers it)."
)
FOLDED_PARAMETERS = (
    "The seed prints `parameters` folded (`[]`): as printed the request is 400; list the names to delete."
)
FOLDED_DATA = "The seed prints `data` folded (`{}`): send the record (an object, an array or a string)."


@dataclass(frozen=True)
class SeedSample:
    seed: str  # "000", "001", "002"
    value: Any
    note: str = ""  # the example's description: what the seed's rendering folded
    refused_as_printed: bool = False  # a required object folded: 400 as printed (docs/compatibility.md)


TOKEN = {
    "client_id": "u4grtTy18E2DYANsv0G174aSxR3EeOiA",
    "client_secret": "U6qN9NTgis3MLeleRXtLgIxtRE-qhpZcPJ_5eoNtNQYcodiY9q0Abs3afgpbX3M6",
    "grant_type": "client_credentials",
}
METER_TYPE_000 = {
    "activeFrom": "2023-07-26T09:00:15.690+00:00",
    "activeTo": "2024-11-22T00:00:00.000+00:00",
    "aggregation": {},
    "capacity": 1000,
    "category": "API Counts",
    "description": "Meter definition to count the number of API requests per customer",
    "externalRef": "878752b4-4ddf",
    "name": "Usage based API counter",
    "resetSchedule": {},
    "thresholds": [],
    "timezone": "Etc/UTC",
    "unit": "requests",
}
METER_TYPE_001 = {
    key: value for key, value in METER_TYPE_000.items() if key not in ("capacity", "thresholds")
}
METER_TYPE_UPDATE_000 = {key: value for key, value in METER_TYPE_000.items() if key != "aggregation"}
METER_TYPE_UPDATE_001 = {key: value for key, value in METER_TYPE_001.items() if key != "aggregation"}
METER_001 = {
    "meterKey": "a1f8797b-c827-4483-b6cf-6d3d3baa18a7",
    "meterTypeId": "645ed240-02b5-400c-9a3c-21857e8f2ac4",
    "userId": "user0@example.com",
}
METER_000 = {"customFields": {}, **METER_001}
COLLECTOR = {"name": "Collector Name"}

SEED_REQUEST_SAMPLES: dict[str, list[SeedSample]] = {
    "POST /oauth/token": [SeedSample("000", TOKEN, "Seed 001 prints the same request.")],
    "POST /meter-types": [
        SeedSample("000", METER_TYPE_000, FOLDED_METER_TYPE, refused_as_printed=True),
        SeedSample("001", METER_TYPE_001, FOLDED_METER_TYPE, refused_as_printed=True),
    ],
    "PATCH /meter-types/{id}": [
        SeedSample("000", METER_TYPE_UPDATE_000, FOLDED_RESET_SCHEDULE),
        SeedSample("001", METER_TYPE_UPDATE_001, FOLDED_RESET_SCHEDULE),
    ],
    "POST /meters": [SeedSample("000", METER_000), SeedSample("001", METER_001)],
    "PATCH /meters/{id}": [
        SeedSample("000", {"capacity": 1000, "customFields": {}, "deleteOnReset": True, "thresholds": []}),
        SeedSample("001", {"deleteOnReset": True}),
    ],
    "POST /online-collection/collectors": [SeedSample("000", COLLECTOR)],
    "PATCH /online-collection/collectors/{id}": [SeedSample("000", COLLECTOR)],
    "POST /online-collection/collectors/{id}/data": [SeedSample("000", {"data": {}}, FOLDED_DATA)],
    "POST /streams/import": [
        SeedSample(
            "000",
            {
                "allowNodeDeletion": True,
                "onNameConflict": "overwrite",
                "solutionId": "73253be8-0c7c-4670-9631-5a29fe59b4d2",
                "streamConfig": {},
            },
            FOLDED_STREAM_CONFIG,
            refused_as_printed=True,
        )
    ],
    "POST /parameters": [
        SeedSample(
            "000",
            {
                "description": "API key for third-party payment gateway",
                "name": "credentials/payment-gateway/api-key",
                "type": "standard",
                "value": "sk_val_51H8KJ8eXAMPLEKEY1234567890",
            },
        )
    ],
    "DELETE /parameters": [SeedSample("000", {"parameters": []}, FOLDED_PARAMETERS, refused_as_printed=True)],
    "PATCH /parameters/{name}": [
        SeedSample(
            "000",
            {
                "description": "Updated API gateway key for external integrations",
                "value": "sk_val_1He58KJ81XAMPLEKEY78956210",
            },
        )
    ],
    "POST /ingest": [
        SeedSample(
            "002",
            {
                "meterApiName": "api-calls",
                "customerId": "customer-123456",
                "meterValue": 1,
                "meterTimeInMillis": 1718153645993,
                "uniqueId": "evt-a1b2c3d4",
                "dimensions": {"region": "us-east-1", "tier": "premium"},
            },
        )
    ],
    "POST /meter-definition": [
        SeedSample(
            "002",
            {
                "meterApiName": "api-calls",
                "displayName": "API Calls",
                "type": "SUM_OF_ALL_USAGE",
                "dimensions": [],
            },
        )
    ],
    "POST /usage": [
        SeedSample(
            "002",
            {
                "meterApiName": "api-calls",
                "startTimeInSeconds": 1718100000,
                "endTimeInSeconds": 1718186400,
                "aggregation": "SUM",
                "timeGroupingInterval": "DAY",
                "groupBy": ["customerId"],
            },
        )
    ],
}
