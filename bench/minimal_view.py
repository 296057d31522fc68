"""The ceiling the HTTP benchmarks compare to: a Django JSON view through the whole middleware
stack, without database, authentication or rate limit. Served only with BENCH_MINIMAL_VIEW=1."""

from django.http import JsonResponse


def minimal_json(request):
    return JsonResponse({"status": "ok"})
