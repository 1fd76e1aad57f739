"""Project settings, read from the environment (and `.run/env`, written by make)."""

from pathlib import Path

import environ

from shop import brokers, production
from shop.observability import logs

# PATHS AND ENVIRONMENT ---------------------------------------------------------------

BASE_DIR = Path(__file__).resolve().parent.parent
RUN_DIR = BASE_DIR / ".run"

env = environ.Env()
# A deployed server runs with SHOP_ENV=production: secrets from its environment only,
# HTTPS, and no start with DEBUG on or a weak SECRET_KEY (see SECURITY).
PRODUCTION = production.is_production(env("SHOP_ENV", default="development"))
# `make run` / `make test` write the locally generated secrets and the addresses of the
# project-local servers here; a variable already set in the environment always wins.
if (RUN_DIR / "env").exists() and not PRODUCTION:
    env.read_env(str(RUN_DIR / "env"), overwrite=False)

# CORE --------------------------------------------------------------------------------

SECRET_KEY = env("SECRET_KEY")
DEBUG = env.bool("DEBUG", default=False)
if PRODUCTION:
    production.refuse_unsafe_settings(debug=DEBUG, secret_key=SECRET_KEY)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
_WEB_PORT = env("WEB_PORT", default="8000")  # where `make run` serves the web
CSRF_TRUSTED_ORIGINS = env.list(
    "CSRF_TRUSTED_ORIGINS",
    default=[f"http://127.0.0.1:{_WEB_PORT}", f"http://localhost:{_WEB_PORT}"],
)
# Flower, where the admin's saga pages link each step's task (<FLOWER_URL>/task/<id>);
# by default the one `make run` serves.
FLOWER_URL = env(
    "FLOWER_URL", default=f"http://127.0.0.1:{env('FLOWER_PORT', default='5555')}"
)

INSTALLED_APPS = [
    "shop.apps.ShopAdminConfig",  # django.contrib.admin, its login throttled
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",  # Swagger UI served from here: no CDN needed
    "django_celery_results",
    "django_celery_beat",
    "shop",
    "sagas",
    "inventory",
    "payments",
    "orders",
]

MIDDLEWARE = [
    # First and last: HTTP requests counted by view, method and status (/metrics).
    "django_prometheus.middleware.PrometheusBeforeMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Before anything reads a cookie, a header or a query parameter into a lookup.
    "shop.middleware.RefuseUnstorableTextMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_prometheus.middleware.PrometheusAfterMiddleware",
]

ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
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

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = RUN_DIR / "static"

# Bodies larger than this are refused before they are parsed (a clear 400, never a 500).
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=64 * 1024)

# DATABASE ----------------------------------------------------------------------------

DATABASES = {"default": env.db("DATABASE_URL")}
# Names another database on the same server: the test suite points its worker, relay
# and beat processes at the test database this way.
if env("DATABASE_NAME", default=""):
    DATABASES["default"]["NAME"] = env("DATABASE_NAME")
# Persistent connections for the web and the workers; one its server ended is dropped
# and reopened before the next request or task, seen on its socket without a query
# (shop.connections), so Django's health check query is not needed.
DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=600)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
# The hot path's hand-written statements (shop.sql) are prepared once per connection
# and executed by name after that. Off behind a pooler that hands one session's
# statements to several server connections (PgBouncer in transaction mode), where a
# statement prepared on one is missing on the next.
SQL_PREPARED_STATEMENTS = env.bool("DATABASE_PREPARED_STATEMENTS", default=True)

# SECURITY ----------------------------------------------------------------------------

# Reverse proxies in front of the web process. The client's address is REMOTE_ADDR
# unless this many append theirs to X-Forwarded-For (which a client can forge).
NUM_PROXIES = env.int("NUM_PROXIES", default=0)

# Production is served over HTTPS: cookies only over it, plain HTTP redirected to it,
# and browsers told to keep to it (HSTS, sent on HTTPS responses only). Each is what
# `manage.py check --deploy` asks for, and its variable can turn it off.
SESSION_COOKIE_SECURE = env.bool("SESSION_COOKIE_SECURE", default=PRODUCTION)
CSRF_COOKIE_SECURE = env.bool("CSRF_COOKIE_SECURE", default=PRODUCTION)
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=PRODUCTION)
# Load balancers probe the web process itself, over plain HTTP.
# Load balancers and Prometheus reach these over plain HTTP inside the network.
SECURE_REDIRECT_EXEMPT = [r"^api/health/$", r"^metrics$"]
SECURE_HSTS_SECONDS = env.int(
    "SECURE_HSTS_SECONDS", default=365 * 24 * 3600 if PRODUCTION else 0
)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool(
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", default=PRODUCTION
)
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=PRODUCTION)
# A proxy that terminates HTTPS says so in X-Forwarded-Proto; it must set the header
# itself, replacing whatever a client sent.
if NUM_PROXIES:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# On every response (SecurityMiddleware, XFrameOptionsMiddleware).
SECURE_CONTENT_TYPE_NOSNIFF = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"

# REST API ----------------------------------------------------------------------------

REST_FRAMEWORK = {
    # Token first: its WWW-Authenticate header makes anonymous requests 401, not 403.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    # JSON only, read under DATA_UPLOAD_MAX_MEMORY_SIZE (see shop.parsers).
    "DEFAULT_PARSER_CLASSES": ["shop.parsers.JSONParser"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_SCHEMA_CLASS": "shop.schema.AutoSchema",
    "EXCEPTION_HANDLER": "shop.exceptions.api_exception_handler",
    # Anonymous requests per address; orders and logins have their own (see
    # THROTTLING). The health check is exempt: load balancers probe it.
    "DEFAULT_THROTTLE_CLASSES": ["shop.throttling.AnonRateThrottle"],
    "NUM_PROXIES": NUM_PROXIES,
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
    # Errors echo what the client sent; ASCII-escaped output can always be encoded,
    # even a lone surrogate ("\ud800") that came in through JSON.
    "UNICODE_JSON": False,
}

# THROTTLING --------------------------------------------------------------------------

# DRF rates ("60/min", "5/s", "1000/h", "10000/day"), read per request.
ORDER_RATE_LIMIT = env("ORDER_RATE_LIMIT", default="60/min")  # per customer
LOGIN_RATE_LIMIT = env("LOGIN_RATE_LIMIT", default="10/min")  # per address + username
ANON_RATE_LIMIT = env("ANON_RATE_LIMIT", default="120/min")  # per address

# Requests are counted in PostgreSQL (shop.RequestCount), one atomic upsert per
# counted request, so every web process shares the counts (shop.throttling).

SPECTACULAR_SETTINGS = {
    "TITLE": "sagashop API",
    "DESCRIPTION": "Place orders; watch the purchase sagas that fulfil or undo them.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "COMPONENT_SPLIT_REQUEST": True,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "PREPROCESSING_HOOKS": ["shop.schema.expand_method_views"],
    "PATH_CONVERTER_OVERRIDES": {
        # As shop.routing and inventory.urls match them: anything else is a 404.
        "sku": {"type": "string", "pattern": r"^[^/\u0000]{1,64}$"},
        "id": {"type": "integer", "minimum": 0, "maximum": 2**63 - 1},
    },
    # Several models have a "status"; each enum gets its model's name.
    "ENUM_NAME_OVERRIDES": {
        "OrderStatusEnum": "orders.models.OrderStatus",
        "SagaStatusEnum": "sagas.models.SagaStatus",
        "StepStatusEnum": "sagas.models.StepStatus",
        "SagaEventKindEnum": "sagas.models.SagaEventKind",
        "SagaModeEnum": "sagas.definitions.base.Mode",
    },
}

# CELERY ------------------------------------------------------------------------------

CELERY_BROKER_URL = env("CELERY_BROKER_URL")
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
# Every broker call is bounded by this (connect, send, a publish's confirmation): a
# broker that stops answering fails calls instead of hanging them (shop.brokers).
BROKER_TIMEOUT = env.float("BROKER_TIMEOUT", default=5.0)
CELERY_BROKER_CONNECTION_TIMEOUT = BROKER_TIMEOUT
# RabbitMQ: a connection that has carried nothing for two of these is dead (a frozen
# broker, a black-holed link), and the worker reconnects. 60 s: a solo worker sends
# none while a step runs, up to its hard limit (40 s) and its report (sagas.W001).
CELERY_BROKER_HEARTBEAT = env.int("BROKER_HEARTBEAT", default=60)
CELERY_BROKER_TRANSPORT_OPTIONS = brokers.transport_options(
    CELERY_BROKER_URL,
    timeout=BROKER_TIMEOUT,
    # It must exceed the longest step deadline plus the longest retry countdown, or
    # a step still running would be handed to a second worker (sagas.checks).
    visibility_timeout=env.int("CELERY_VISIBILITY_TIMEOUT", default=600),
    keyprefix=env("CELERY_BROKER_KEYPREFIX", default=""),
)
# A failed publish is tried once more, then the caller sees the error: the outbox
# relay postpones the row, a step's next message is recovered by the sweep.
CELERY_TASK_PUBLISH_RETRY_POLICY = {
    "max_retries": 1,
    "interval_start": 0.2,
    "interval_step": 0.5,
    "interval_max": 1.0,
}
CELERY_RESULT_BACKEND = "django-db"
CELERY_RESULT_EXTENDED = True
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
# Delivery: acknowledge after the work is done and reserve one message per process,
# so a killed worker's messages go back to the queue instead of being lost.
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_WORKER_CANCEL_LONG_RUNNING_TASKS_ON_CONNECTION_LOSS = True
CELERY_WORKER_SOFT_SHUTDOWN_TIMEOUT = 10.0
CELERY_WORKER_SEND_TASK_EVENTS = env.bool(
    "CELERY_WORKER_SEND_TASK_EVENTS", default=True
)
# No task-sent events: one more broker message for every task a process sends, and
# Flower learns of a task when a worker takes it (a probe sent by the recovery sweep
# would otherwise show there as PENDING for good).
CELERY_TASK_SEND_SENT_EVENT = False
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# The fixup would otherwise open a new database connection for every task.
CELERY_DB_REUSE_MAX = 10_000
# Saga steps go to the "sagas" queue (set on their task class); everything else here.
CELERY_TASK_DEFAULT_QUEUE = "maintenance"
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
CELERY_BEAT_SCHEDULE = {
    "relay-outbox": {
        "task": "sagas.relay_outbox",
        "schedule": env.float("OUTBOX_SWEEP_SECONDS", default=5.0),
    },
    "recover-sagas": {
        "task": "sagas.recover_sagas",
        "schedule": env.float("SAGA_RECOVERY_SECONDS", default=5.0),
    },
    "reconcile": {
        "task": "orders.reconcile",
        "schedule": env.float("RECONCILE_SECONDS", default=600.0),
    },
    "clean-outbox": {
        "task": "sagas.clean_outbox",
        "schedule": 3600.0,
    },
    "clean-inboxes": {
        "task": "sagas.clean_inboxes",
        "schedule": 3600.0,
    },
    "clean-barriers": {
        "task": "sagas.clean_barriers",
        "schedule": 600.0,
    },
    "clean-request-counts": {
        "task": "shop.clean_request_counts",
        "schedule": 3600.0,
    },
}

# SAGAS -------------------------------------------------------------------------------

# Defaults for steps whose definition does not say otherwise (seconds).
SAGA_STEP_TIMEOUT = env.float("SAGA_STEP_TIMEOUT", default=30.0)
# How long past its deadline a saga may sit unlocked before the recovery sweep
# re-dispatches its work (a queue backlog is not a crash).
SAGA_RECOVERY_GRACE = env.float("SAGA_RECOVERY_GRACE", default=10.0)
# After this many proven losses of the same step's work, it counts as timed out.
SAGA_MAX_RECOVERIES = env.int("SAGA_MAX_RECOVERIES", default=5)
# A queue probe that has not arrived after this long is sent again (sagas.probes).
SAGA_PROBE_RESEND = env.float("SAGA_PROBE_RESEND", default=30.0)
# An unexpected error (a bug, not an outage) is retried this many times at most, even
# after the pivot where outages are retried forever; then an operator is needed.
SAGA_UNEXPECTED_RETRIES = env.int("SAGA_UNEXPECTED_RETRIES", default=3)
# A step after the pivot that has failed this many times shows as needing attention
# (it is still retried).
SAGA_ATTENTION_ATTEMPTS = env.int("SAGA_ATTENTION_ATTEMPTS", default=10)
# Fault injection for demos and tests, e.g. "payments.charge:transient:0.2"; empty: off.
SAGA_FAULTS = env("SAGA_FAULTS", default="")
# Events no app subscribes to (an orchestrated purchase's StockReserved, ...) are not
# written; true keeps them in their app's outbox as a record, marked already handled.
OUTBOX_KEEP_UNSUBSCRIBED = env.bool("OUTBOX_KEEP_UNSUBSCRIBED", default=False)
# Published outbox rows are kept this long, then deleted.
MESSAGE_RETENTION_DAYS = env.int("MESSAGE_RETENTION_DAYS", default=7)
# Handled messages are remembered this long: the window in which a copy is dropped.
INBOX_RETENTION_DAYS = env.int("INBOX_RETENTION_DAYS", default=7)
# Barriers of ended sagas are deleted after this long (a copy arriving later still
# finds its saga ended and does nothing).
BARRIER_RETENTION_DAYS = env.int("BARRIER_RETENTION_DAYS", default=1)
# A choreographed saga's reaction that fails (not a business refusal) is retried this
# many times with backoff; then the recovery sweep sends its event again.
SAGA_REACTION_RETRIES = env.int("SAGA_REACTION_RETRIES", default=5)
# How a purchase runs when its order does not say: orchestration, choreography or tcc.
SAGA_DEFAULT_MODE = env("SAGA_DEFAULT_MODE", default="orchestration")

# SHOP --------------------------------------------------------------------------------

# Destinations the carrier serves; shipping elsewhere fails and the purchase is undone.
SHIPPING_COUNTRIES = env.list(
    "SHIPPING_COUNTRIES", default=["JP", "US", "GB", "DE", "FR"]
)

# OBSERVABILITY -----------------------------------------------------------------------

# One event per line from every process, with the saga at work on each (shop.
# observability.logs): readable lines, or JSON lines with LOG_FORMAT=json.
LOG_FORMAT = env("LOG_FORMAT", default="console")
LOGGING_CONFIG = "shop.observability.logs.configure"
LOGGING = logs.logging_config(
    log_format=LOG_FORMAT, level=env("LOG_LEVEL", default="INFO")
)
# GET /metrics answers only "Authorization: Bearer <this>"; unset, it is a 404.
# Worker processes' metrics add up in the web's answer when PROMETHEUS_MULTIPROC_DIR
# names a directory shared by them all (`make run` sets it).
METRICS_TOKEN = env("METRICS_TOKEN", default="")
if PRODUCTION:
    production.refuse_weak_metrics_token(METRICS_TOKEN)
