"""Settings, read from the environment (12-factor).

With no environment variables the service runs embedded: a SQLite file in ``var/`` and a
file-system Celery broker, so ``make run`` needs no server. Production and CI set
``DATABASE_URL`` (PostgreSQL through psycopg 3), ``CELERY_BROKER_URL`` (Redis or RabbitMQ)
and ``REDIS_URL`` (rate limits and cache).
"""

import os
from pathlib import Path

import dj_database_url

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(os.environ.get("VAR_DIR", BASE_DIR / "var"))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def env_bool(name: str, default: bool = False) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


SECRET_KEY = os.environ.get("SECRET_KEY", "insecure-embedded-default-change-me-in-production")
DEBUG = env_bool("DEBUG", False)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1,[::1],testserver")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "oauth2_provider",
    "django_celery_beat",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "accounts",
    "metering",
    "billing",
    "collection",
    "streams",
    "parameters",
    "notifications",
    "console",
]

MIDDLEWARE = [
    "config.metrics.MetricsMiddleware",
    "config.api.middleware.ApiErrorMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# --- Database -------------------------------------------------------------------------------
DATABASE_URL = os.environ.get("DATABASE_URL", f"sqlite:///{VAR_DIR / 'metering.sqlite3'}")
DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=60, conn_health_checks=True)}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["CONN_MAX_AGE"] = 0
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"].setdefault("OPTIONS", {})
    # Fail fast when the database is down, so the API answers 503 instead of hanging.
    DATABASES["default"]["OPTIONS"].setdefault("connect_timeout", 3)
IS_POSTGRES = DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and Redis ------------------------------------------------------------------------
REDIS_URL = os.environ.get("REDIS_URL", "")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "OPTIONS": {"socket_connect_timeout": 0.5, "socket_timeout": 0.5},
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery ---------------------------------------------------------------------------------
BROKER_DIR = VAR_DIR / "broker"
# The host part names the default explicitly (kombu warns on every connection without one).
CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", "filesystem://localhost//")
CELERY_BROKER_TRANSPORT_OPTIONS: dict = {}
if CELERY_BROKER_URL.startswith("filesystem://"):
    for sub in ("queue", "processed", "control"):
        (BROKER_DIR / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
else:
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "visibility_timeout": 3600,
        "socket_timeout": 2,
        "socket_connect_timeout": 2,
    }
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_TASK_IGNORE_RESULT = True
CELERY_RESULT_BACKEND = None
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_ENABLE_UTC = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
# Time limits on every task, so no task can hold a worker (and the queue behind it): at the soft
# limit the task gets SoftTimeLimitExceeded and ends cleanly (a stream run is recorded FAILED with
# the reason, its transaction rolled back); at the hard limit the process running it is replaced.
# Enforced by the prefork pool (production's default); the embedded default's solo pool enforces
# the soft limit with an alarm (config/celery.py). Per task: CELERY_TASK_ANNOTATIONS.
CELERY_TASK_SOFT_TIME_LIMIT = float(os.environ.get("CELERY_TASK_SOFT_TIME_LIMIT", "120"))
CELERY_TASK_TIME_LIMIT = float(os.environ.get("CELERY_TASK_TIME_LIMIT", "180"))
# A stream run reads at most 100 batches (16 MiB); at the pipeline's ~20,000 records/s that is
# seconds, so a run still going after a minute is stopped and retried after a backoff.
STREAM_RUN_SOFT_TIME_LIMIT = float(os.environ.get("STREAM_RUN_SOFT_TIME_LIMIT", "60"))
STREAM_RUN_TIME_LIMIT = float(os.environ.get("STREAM_RUN_TIME_LIMIT", "90"))
CELERY_TASK_ANNOTATIONS = {
    "streams.run_stream": {"soft_time_limit": STREAM_RUN_SOFT_TIME_LIMIT, "time_limit": STREAM_RUN_TIME_LIMIT}
}
DJANGO_CELERY_BEAT_TZ_AWARE = True

# --- Auth -----------------------------------------------------------------------------------
PASSWORD_HASHERS = [
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "accounts.hashers.HighEntropySecretHasher",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
OAUTH2_PROVIDER = {
    "ACCESS_TOKEN_EXPIRE_SECONDS": 3600,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "CLIENT_SECRET_HASHER": "pbkdf2_sha256_secret",
    "SCOPES_BACKEND_CLASS": "accounts.scopes.ApplicationAccessScopes",
}
OAUTH2_PROVIDER_APPLICATION_MODEL = "oauth2_provider.Application"
OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL = "oauth2_provider.AccessToken"
OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL = "oauth2_provider.RefreshToken"
OAUTH2_PROVIDER_ID_TOKEN_MODEL = "oauth2_provider.IDToken"
OAUTH2_PROVIDER_GRANT_MODEL = "oauth2_provider.Grant"
# Hot paths cache token and API-key lookups in-process; a revoked token stops working within this TTL.
AUTH_CACHE_SECONDS = int(os.environ.get("AUTH_CACHE_SECONDS", "30"))

# --- API conventions ------------------------------------------------------------------------
API_MAX_BODY_BYTES = int(os.environ.get("API_MAX_BODY_BYTES", str(1024 * 1024)))
DATA_UPLOAD_MAX_MEMORY_SIZE = API_MAX_BODY_BYTES
# How old a usage record may be and still count (a backfill of a year and a month fits), and how long
# idempotency keys are remembered: never shorter than the acceptance window, so a replay inside the
# window is always caught by its key (the ledger accepts only the shorter of the two).
USAGE_ACCEPTANCE_DAYS = int(os.environ.get("USAGE_ACCEPTANCE_DAYS", "400"))
IDEMPOTENCY_WINDOW_DAYS = int(os.environ.get("IDEMPOTENCY_WINDOW_DAYS", str(USAGE_ACCEPTANCE_DAYS)))
# Send data's Idempotency-Key is remembered as long as its collected batch is kept.
COLLECTION_IDEMPOTENCY_DAYS = int(os.environ.get("COLLECTION_IDEMPOTENCY_DAYS", "35"))
RATE_LIMIT_ENABLED = env_bool("RATE_LIMIT_ENABLED", True)
# group: (requests, per seconds, burst) as in seed 000's "Rate Limits" lines.
RATE_LIMITS = {
    "token": (10, 1, 5),
    # Every POST /oauth/token per client address, before anything is checked.
    "token_source": (50, 1, 50),
    "meter_types": (20, 1, 5),
    "meters": (50, 1, 5),
    "collector_writes": (1, 1, 1),
    "collector_reads": (5, 60, 5),
    "send_data": (2000, 1, 5),
    "streams": (20, 1, 5),
    "aggregation": (50, 1, 5),
    "parameters": (2, 1, 4),
    "parameters_delete": (1, 1, 2),
    "ingest": (2000, 1, 50),
    "usage_queries": (50, 1, 10),
    "billing": (2000, 1, 50),
    "config": (20, 1, 10),
}
METRICS_TOKEN = os.environ.get("METRICS_TOKEN", "")
# Admin sign-in throttle (accounts/throttle.py): failures per user name and address, per address.
LOGIN_FAILURE_LIMIT = int(os.environ.get("LOGIN_FAILURE_LIMIT", "5"))
LOGIN_ADDRESS_FAILURE_LIMIT = int(os.environ.get("LOGIN_ADDRESS_FAILURE_LIMIT", "20"))
LOGIN_LOCKOUT_SECONDS = int(os.environ.get("LOGIN_LOCKOUT_SECONDS", "900"))
# POST /oauth/token: failed client authentications per client address before 429.
TOKEN_FAILURE_LIMIT = int(os.environ.get("TOKEN_FAILURE_LIMIT", "20"))
TOKEN_FAILURE_WINDOW_SECONDS = int(os.environ.get("TOKEN_FAILURE_WINDOW_SECONDS", "300"))
# Seconds a 503 asks the client to wait when a dependency is down.
RETRY_AFTER_SECONDS = int(os.environ.get("RETRY_AFTER_SECONDS", "5"))

# Connections each ASGI worker process opens for the send-data fast path (config/asyncdb.py).
ASYNC_DB_POOL_SIZE = int(os.environ.get("ASYNC_DB_POOL_SIZE", "4"))

# --- collection (online collectors, send data, collected batches) ---------------------------
# At most this many collectors per account (seed 000: five).
COLLECTION_MAX_COLLECTORS = int(os.environ.get("COLLECTION_MAX_COLLECTORS", "5"))
# Batches consumed by every registered consumer are pruned once older than this.
COLLECTION_RETENTION_HOURS = int(os.environ.get("COLLECTION_RETENTION_HOURS", "168"))
# Send data caches "this collector is ACTIVE and belongs to that account" per process this long:
# a deleted collector stops taking data in every web process within it.
COLLECTION_COLLECTOR_CACHE_SECONDS = float(os.environ.get("COLLECTION_COLLECTOR_CACHE_SECONDS", "5"))
# Deepest nesting of arrays/objects accepted in a send-data body.
COLLECTION_MAX_NESTING_DEPTH = int(os.environ.get("COLLECTION_MAX_NESTING_DEPTH", "64"))
# --- streams ---------------------------------------------------------------------------------
# A run still RUNNING this long after it started was abandoned by a worker that died: the sweep
# (beat, every minute) marks it FAILED. Longer than any run takes (runs read at most 16 MiB).
STREAM_RUN_ABANDONED_SECONDS = int(os.environ.get("STREAM_RUN_ABANDONED_SECONDS", "600"))
# Output nodes (httpForwarder) send through an outbox after the run commits (streams.engine.deliveries):
# attempts per delivery before it is a dead letter; the wait after failed attempt n is
# min(max, base·2^(n-1)), of which a random half (jitter); a receiver's Retry-After is a floor.
STREAM_OUTPUT_MAX_ATTEMPTS = int(os.environ.get("STREAM_OUTPUT_MAX_ATTEMPTS", "12"))
STREAM_OUTPUT_BACKOFF_BASE_SECONDS = float(os.environ.get("STREAM_OUTPUT_BACKOFF_BASE_SECONDS", "5"))
STREAM_OUTPUT_BACKOFF_MAX_SECONDS = float(os.environ.get("STREAM_OUTPUT_BACKOFF_MAX_SECONDS", "1800"))
# An attempt's claim lasts the node's timeoutSeconds plus this margin: a worker killed mid-send
# leaves its delivery to be attempted again (same Delivery-Id) once the claim has lapsed.
STREAM_OUTPUT_LEASE_MARGIN_SECONDS = float(os.environ.get("STREAM_OUTPUT_LEASE_MARGIN_SECONDS", "30"))
# Delivered rows (their body emptied) are kept this long for the admin and the API, then purged.
STREAM_OUTPUT_DELIVERED_RETENTION_HOURS = int(
    os.environ.get("STREAM_OUTPUT_DELIVERED_RETENTION_HOURS", "168")
)
# Stream health: a stream whose oldest unconsumed collected batch is older than this is lagging.
STREAM_LAG_WARNING_SECONDS = float(os.environ.get("STREAM_LAG_WARNING_SECONDS", "60"))
# The budget of every evaluation of a user expression (CEL in map, script and script aggregator
# nodes), enforced inside the evaluator; a record that exceeds it is rejected with the reason
# (docs/engine.md, "Script budgets"). Steps: comprehension iterations (each costing its body's
# size) and operations on sized values (per 32 elements or 16 KiB).
STREAM_SCRIPT_MAX_STEPS = int(os.environ.get("STREAM_SCRIPT_MAX_STEPS", "10000"))
# Longest string (or bytes) an expression may build, in characters.
STREAM_SCRIPT_MAX_STRING_LENGTH = int(os.environ.get("STREAM_SCRIPT_MAX_STRING_LENGTH", "100000"))
# Most elements in a list or map an expression builds, nested elements included.
STREAM_SCRIPT_MAX_COLLECTION_SIZE = int(os.environ.get("STREAM_SCRIPT_MAX_COLLECTION_SIZE", "10000"))
# Deepest nesting of an expression, checked at import (400 with the reason).
STREAM_SCRIPT_MAX_DEPTH = int(os.environ.get("STREAM_SCRIPT_MAX_DEPTH", "100"))
# A preview stops evaluating expressions after this long in total: later records are rejected.
STREAM_SCRIPT_PREVIEW_SECONDS = float(os.environ.get("STREAM_SCRIPT_PREVIEW_SECONDS", "3"))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["accounts.authentication.BearerTokenAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["config.api.permissions.HasRequiredScope"],
    "DEFAULT_THROTTLE_CLASSES": ["config.api.throttling.TokenBucketThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["config.api.parsers.LimitedJSONParser"],
    "DEFAULT_PAGINATION_CLASS": None,
    "EXCEPTION_HANDLER": "config.api.errors.api_exception_handler",
    "DEFAULT_SCHEMA_CLASS": "config.api.schema.ApiAutoSchema",
    "DEFAULT_CONTENT_NEGOTIATION_CLASS": "config.api.negotiation.JsonContentNegotiation",
    "DEFAULT_METADATA_CLASS": "config.api.metadata.AllowedMethodsMetadata",
    "UNAUTHENTICATED_USER": None,
    "DATETIME_FORMAT": "%Y-%m-%dT%H:%M:%S.%fZ",
    "COERCE_DECIMAL_TO_STRING": False,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Usage metering API",
    "DESCRIPTION": "Usage Engine CE compatible REST API, Amberflo-compatible metering API and billing report-usage API."
    " Every answer is JSON; every error is {code, message, details}. Strings may not hold a null"
    " character or a lone surrogate, in a path, a query or a body: 400 (PostgreSQL cannot store them).",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # Several bodies have a "type" choice; name each set instead of a numbered collision.
    "ENUM_NAME_OVERRIDES": {
        "ParameterTypeEnum": ["standard", "sensitive"],
        "ActorTypeEnum": "streams.api.serializers.ACTOR_TYPES",
    },
    # The trailing-slash aliases of the compatible paths (for the Amberflo SDK) are the same
    # operations: documented once, without the slash.
    "PREPROCESSING_HOOKS": ["config.api.schema.without_slash_aliases"],
    # The security schemes (OAuth2 client credentials, X-API-KEY), declared once by the accounts app;
    # then the seeds' request samples as examples. Enum postprocessing stays first (the default).
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "accounts.openapi.security_schemes",
        "config.api.schema.seed_request_examples",
    ],
    # /docs/: Authorize fetches a token with the client-credentials flow (POST /oauth/token) and
    # keeps it across reloads.
    "SWAGGER_UI_SETTINGS": {
        "persistAuthorization": True,
        "deepLinking": True,
        "displayRequestDuration": True,
    },
}

# --- i18n, static ---------------------------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
# The admin shows every date and time one way (config/formats/en/formats.py).
FORMAT_MODULE_PATH = ["config.formats"]
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
    # 4xx answers (429s under load, 404s) are not worth a log line each; 5xx still are.
    "loggers": {"django.db.backends": {"level": "INFO"}, "django.request": {"level": "ERROR"}},
}

# --- Global parameters (parameters app) -----------------------------------------------------
# Fernet keys for sensitive parameter values, comma-separated, newest first (new values use the
# first; any listed key decrypts). Rotate: put a new key first, run `manage.py
# rotate_parameter_keys`, then drop the old one. Unset: the embedded default generates one key in
# PARAMETER_KEY_FILE (with a warning); set PARAMETER_KEY_FILE to "" to make a missing key an error.
PARAMETER_ENCRYPTION_KEYS = env_list("PARAMETER_ENCRYPTION_KEYS", "")
PARAMETER_KEY_FILE = os.environ.get("PARAMETER_KEY_FILE", str(VAR_DIR / "parameter_encryption.key"))

# --- Notifications (webhooks) and outbound HTTP (notifications app) --------------------------
# Outbound targets (webhooks, stream httpForwarder) on loopback, private, link-local, CGNAT,
# multicast or reserved addresses are refused unless this is on (development and tests only).
OUTBOUND_ALLOW_PRIVATE_TARGETS = env_bool("OUTBOUND_ALLOW_PRIVATE_TARGETS", False)
# Total time one webhook request may take (connect, send, answer), in seconds.
WEBHOOK_TIMEOUT_SECONDS = float(os.environ.get("WEBHOOK_TIMEOUT_SECONDS", "10"))
# Attempts per delivery before it is FAILED; backoff after attempt n is uniform(0, min(max, base·2^(n-1))).
WEBHOOK_MAX_ATTEMPTS = int(os.environ.get("WEBHOOK_MAX_ATTEMPTS", "8"))
WEBHOOK_BACKOFF_BASE_SECONDS = float(os.environ.get("WEBHOOK_BACKOFF_BASE_SECONDS", "30"))
WEBHOOK_BACKOFF_MAX_SECONDS = float(os.environ.get("WEBHOOK_BACKOFF_MAX_SECONDS", "21600"))
# The retry sweep (beat, every 30 s) attempts at most this many deliveries, within this many seconds.
WEBHOOK_SWEEP_BATCH_SIZE = int(os.environ.get("WEBHOOK_SWEEP_BATCH_SIZE", "100"))
WEBHOOK_SWEEP_TIME_BUDGET_SECONDS = float(os.environ.get("WEBHOOK_SWEEP_TIME_BUDGET_SECONDS", "25"))
NOTIFICATION_ENDPOINTS_MAX_PER_ACCOUNT = int(os.environ.get("NOTIFICATION_ENDPOINTS_MAX_PER_ACCOUNT", "20"))

# --- Console (the admin dashboard; console app) ----------------------------------------------
# A meter is listed as near capacity once its value reaches this percentage of its capacity.
CONSOLE_NEAR_CAPACITY_PERCENT = int(os.environ.get("CONSOLE_NEAR_CAPACITY_PERCENT", "80"))
# Days the dashboard's usage charts cover (ending today in each meter type's timezone).
CONSOLE_USAGE_DAYS = int(os.environ.get("CONSOLE_USAGE_DAYS", "30"))
# Minutes the collectors' intake rates cover (the current minute and those before it). The panel
# reads that window of the collected-batch log; keep it short where collectors take thousands of
# batches a second.
CONSOLE_INTAKE_MINUTES = int(os.environ.get("CONSOLE_INTAKE_MINUTES", "15"))

# --- Flush and reset of meters (metering app: metering/flush.py, metering/tasks.py) -----------
# The reset sweep (beat, every minute) flushes due meters in batches of this many meters, one
# transaction each; it stops after this many batches or seconds and re-enqueues itself if more
# are due.
METERING_FLUSH_BATCH_SIZE = int(os.environ.get("METERING_FLUSH_BATCH_SIZE", "500"))
METERING_FLUSH_MAX_BATCHES = int(os.environ.get("METERING_FLUSH_MAX_BATCHES", "200"))
METERING_FLUSH_TIME_BUDGET_SECONDS = float(os.environ.get("METERING_FLUSH_TIME_BUDGET_SECONDS", "50"))


# --- Usage ledger and compatible APIs (metering app: metering/ledger/, metering/compat/) ----
# Records may be this far ahead of the server's clock (a client's clock skew); later is FUTURE_TIMESTAMP.
# Records older than USAGE_ACCEPTANCE_DAYS (or IDEMPOTENCY_WINDOW_DAYS, if shorter) are refused
# (TIMESTAMP_TOO_OLD), so a replay is always caught by its idempotency key; keys older than the
# idempotency window are purged.
USAGE_CLOCK_SKEW_SECONDS = int(os.environ.get("USAGE_CLOCK_SKEW_SECONDS", "300"))
# The ledger's PostgreSQL statements are prepared once per connection. Turn off behind a
# transaction-mode connection pooler (PgBouncer < 1.21) that cannot keep prepared statements.
USAGE_LEDGER_PREPARED_STATEMENTS = env_bool("USAGE_LEDGER_PREPARED_STATEMENTS", True)
if IS_POSTGRES and USAGE_LEDGER_PREPARED_STATEMENTS:
    # Django connects with psycopg's prepare_threshold None, and psycopg then prepares nothing, not
    # even a statement executed with prepare=True (the ledger's). A threshold no statement reaches
    # prepares only those: the ORM's client-side cursors never prepare, other statements on a
    # server-side cursor are not prepared behind a pooler's back.
    DATABASES["default"]["OPTIONS"].setdefault("prepare_threshold", 2**31 - 1)
# Most events one /ingest request may carry (the body limit API_MAX_BODY_BYTES applies too).
INGEST_MAX_EVENTS = int(os.environ.get("INGEST_MAX_EVENTS", "10000"))
# Most time buckets one /usage query may answer per group.
USAGE_QUERY_MAX_BUCKETS = int(os.environ.get("USAGE_QUERY_MAX_BUCKETS", "10000"))
# PostgreSQL: the ledger is range-partitioned by UTC month (metering/partitions.py). The daily beat
# task "metering: ledger partitions" keeps partitions for the current month and this many ahead.
LEDGER_PARTITION_MONTHS_AHEAD = int(os.environ.get("LEDGER_PARTITION_MONTHS_AHEAD", "3"))
# Months of raw ledger kept before the current one; older monthly partitions are detached (kept as
# tables of their own) by the same task. Empty keeps everything. The hourly rollups are never
# removed, so usage queries still answer for detached months. LEDGER_RETENTION_DROP drops them too.
LEDGER_RETENTION_MONTHS = (
    int(os.environ["LEDGER_RETENTION_MONTHS"])
    if os.environ.get("LEDGER_RETENTION_MONTHS", "").strip()
    else None
)
LEDGER_RETENTION_DROP = env_bool("LEDGER_RETENTION_DROP", False)
# OpenAPI enum names of the Amberflo meter definition types (they would collide on "type").
SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"] = {
    **SPECTACULAR_SETTINGS.get("ENUM_NAME_OVERRIDES", {}),
    "MeterDefinitionTypeEnum": "metering.compat.amberflo.SHOWN_TYPES",
    "MeterDefinitionRequestTypeEnum": "metering.compat.amberflo.DEFINITION_TYPES",
}
# bench/ingest.py only: serve GET /bench/minimal, a Django JSON view without database, as the ceiling.
