"""The ceilings the HTTP benchmarks compare to, served only by the benchmarks' own applications
(``bench/wsgi.py``, ``bench/asgi.py``: production URL modules never import bench/).

``GET /bench/minimal`` is a minimal Django JSON view (no database, authentication or rate limit):
the stack's own ceiling. The two "floor" views add to it, one at a time, the round trips send
data cannot do without, so the benchmark shows what they cost on this machine before any of
send data's own work:

- ``POST /bench/minimal/rate-limit``: one token from the Redis rate limiter (the same call the
  API makes; a bucket per web process, so it never says 429 at benchmark rates);
- ``POST /bench/minimal/append/<collector id>``: the request body stored durably with the production append
  statement (one INSERT, committed) into the collector in the path (the bench's own).
"""

import os
import uuid

from django.http import HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt


def minimal_json(request):
    return JsonResponse({"status": "ok"})


@csrf_exempt
def minimal_rate_limit(request):
    from config.api.ratelimit import limiter

    limiter.take("send_data", f"bench-floor-{os.getpid()}")
    return JsonResponse({"status": "ok"})


@csrf_exempt
def minimal_append(request, collector):
    from collection import services
    from collection.selectors import collector_account_and_status

    collector_id = uuid.UUID(collector)
    account_id = _accounts.get(collector_id)
    if account_id is None:
        account_id = _accounts[collector_id] = collector_account_and_status(collector_id=collector_id)[0]
    result = services.collected_batch_append(
        account_id=account_id, collector_id=collector_id, payload=request.body
    )
    return HttpResponse(
        b'{"ingestionId":"%s"}' % str(result.ingestion_id).encode(), content_type="application/json"
    )


_accounts: dict = {}

# The lean URLconf of the benchmarks (bench/hot_urls.py) adds them to the hot routes.
urlpatterns = [
    path("bench/minimal", minimal_json, name="bench-minimal"),
    path("bench/minimal/rate-limit", minimal_rate_limit),
    path("bench/minimal/append/<str:collector>", minimal_append),
]
