"""Shipmate settings. Every value comes from the environment; see the README's
configuration table and `.env.example`."""

from __future__ import annotations

import re
from pathlib import Path

import dj_database_url
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from deployments.pipeline.outbound import OutboundPolicy

from .env import env_bool, env_float, env_int, env_list, env_size, env_str

BASE_DIR = Path(__file__).resolve().parent.parent
STATE_DIR = Path(env_str("SHIPMATE_STATE_DIR", str(BASE_DIR / ".state")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY is required unless DEBUG is on")
    SECRET_KEY = "insecure-debug-only-key"
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
# Key for secrets at rest (environment variables, kubeconfigs). Falls back to a
# key derived from SECRET_KEY so the one-machine setup needs no extra step.
FIELD_ENCRYPTION_KEY = env_str("FIELD_ENCRYPTION_KEY", "")
if FIELD_ENCRYPTION_KEY:
    # Checked here, not at the first encrypt: a typo would otherwise surface only when
    # someone saves a secret, or make every stored secret unreadable.
    try:
        Fernet(FIELD_ENCRYPTION_KEY.encode())
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEY must be a Fernet key (32 url-safe base64-encoded bytes)"
        ) from exc

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "django_htmx",
    "template_partials",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "deployments",
    "deployments.api",
    "deployments.webhooks",
    "deployments.notifications",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
]

ROOT_URLCONF = "pipeline_ui.urls"
ASGI_APPLICATION = "pipeline_ui.asgi.application"
WSGI_APPLICATION = "pipeline_ui.wsgi.application"

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
                "deployments.context_processors.navigation",
            ],
        },
    }
]

_default_sqlite = STATE_DIR / "shipmate.sqlite3"
DATABASE_URL = env_str("DATABASE_URL", f"sqlite:///{_default_sqlite}")
try:
    DATABASES = {"default": dj_database_url.parse(DATABASE_URL, conn_max_age=0)}
except ValueError as exc:
    raise ImproperlyConfigured(f"DATABASE_URL is not a database URL: {exc}") from exc
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    Path(DATABASES["default"]["NAME"]).parent.mkdir(parents=True, exist_ok=True)
    # WAL lets the web process read while the worker writes; IMMEDIATE takes the
    # write lock at BEGIN so claims never fail half-way with "database is locked".
    DATABASES["default"]["OPTIONS"] = {
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"

SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SECURE = env_bool("SECURE_COOKIES", False)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
X_FRAME_OPTIONS = "DENY"

# Redis: one URL for the Celery broker, the log streams and locks.
REDIS_URL = env_str("REDIS_URL", "redis://127.0.0.1:6379/0")
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", REDIS_URL)
CELERY_RESULT_BACKEND = None
CELERY_TASK_IGNORE_RESULT = True
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_SERIALIZER = "json"
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
DEPLOYMENT_TIME_LIMIT = env_int("SHIPMATE_DEPLOYMENT_TIME_LIMIT", 3600, minimum=60)
CELERY_TASK_TIME_LIMIT = DEPLOYMENT_TIME_LIMIT + 120
CELERY_TASK_SOFT_TIME_LIMIT = DEPLOYMENT_TIME_LIMIT + 60
# Must be longer than any run, or Redis redelivers a message still being worked on.
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": DEPLOYMENT_TIME_LIMIT * 2}
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
REAPER_INTERVAL = env_int("SHIPMATE_REAPER_INTERVAL", 30, minimum=1)
CELERY_BEAT_SCHEDULE = {
    "reap-expired-leases": {
        "task": "deployments.tasks.reap",
        "schedule": float(REAPER_INTERVAL),
    },
    # Notifications whose message was lost (the broker was down when it was published).
    "redispatch-lost-notifications": {
        "task": "deployments.notifications.tasks.redispatch",
        "schedule": float(REAPER_INTERVAL),
    },
}
# Notifications go to a queue of their own, consumed by a worker of their own (make run,
# compose.yaml): a receiver that hangs holds a notification slot, never a deployment's.
CELERY_TASK_ROUTES = {"deployments.notifications.tasks.*": {"queue": "notifications"}}

# The pipeline.
DOCKER_HOST = env_str("DOCKER_HOST", "")  # empty: the Docker SDK's default (socket)
REGISTRY = env_str("SHIPMATE_REGISTRY", "127.0.0.1:5000")
REGISTRY_USERNAME = env_str("SHIPMATE_REGISTRY_USERNAME", "")
REGISTRY_PASSWORD = env_str("SHIPMATE_REGISTRY_PASSWORD", "")
# Not "host": a RUN step could then reach services on the worker's loopback (Redis,
# PostgreSQL). scripts/run.sh picks "host" for its own bridge-less demo engine.
BUILD_NETWORK_MODE = env_str("SHIPMATE_BUILD_NETWORK_MODE", "bridge")
WORK_DIR = Path(env_str("SHIPMATE_WORK_DIR", str(STATE_DIR / "work")))
TEST_TIMEOUT = env_int("SHIPMATE_TEST_TIMEOUT", 600, minimum=1)
# What one test container may use (see deployments/pipeline/testrun.py ContainerLimits).
TEST_CPUS = env_float("SHIPMATE_TEST_CPUS", 1.0, minimum=0.01)
TEST_MEMORY = env_size("SHIPMATE_TEST_MEMORY", "512m")
TEST_PIDS = env_int("SHIPMATE_TEST_PIDS", 256, minimum=16)
TEST_SCRATCH = env_size("SHIPMATE_TEST_SCRATCH", "256m")
TEST_READ_ONLY = env_bool("SHIPMATE_TEST_READ_ONLY", True)
LEASE_SECONDS = env_int("SHIPMATE_LEASE_SECONDS", 60, minimum=5)
MAX_ATTEMPTS = env_int("SHIPMATE_MAX_ATTEMPTS", 2, minimum=1)
GIT_ALLOWED_PROTOCOLS = env_list("SHIPMATE_GIT_PROTOCOLS", ["https", "ssh", "git", "file"])
# Internal address classes (loopback, private, link-local, metadata, multicast,
# unspecified, reserved) or CIDRs that repository URLs, smoke URLs and health checks may
# reach; empty: none (deployments/pipeline/outbound.py). `make run` and the tests set
# "loopback": their registry, engine and demo apps all listen on 127.0.0.1.
OUTBOUND_ALLOW_INTERNAL = env_list("SHIPMATE_ALLOW_INTERNAL", [])
try:
    OutboundPolicy.parse(OUTBOUND_ALLOW_INTERNAL)
except ValueError as exc:
    raise ImproperlyConfigured(str(exc)) from None
# Host directories under which a docker placement may bind-mount; empty: named volumes only.
BIND_MOUNT_ROOTS = env_list("SHIPMATE_BIND_MOUNT_ROOTS", [])
LOG_STREAM_MAXLEN = env_int("SHIPMATE_LOG_STREAM_MAXLEN", 20000, minimum=100)
LOG_STREAM_TTL = env_int("SHIPMATE_LOG_STREAM_TTL", 3600, minimum=1)
LOG_PAGE_TAIL = env_int("SHIPMATE_LOG_PAGE_TAIL", 500, minimum=10)
# Lines the deployment page keeps rendered while it follows a live log (older ones are
# trimmed in bulk and come back with "Load earlier").
LOG_VIEW_MAX_LINES = env_int("SHIPMATE_LOG_VIEW_MAX_LINES", 5000, minimum=100)
# A webhook body larger than this is refused (413) before its signature is checked.
WEBHOOK_MAX_BYTES = env_int("SHIPMATE_WEBHOOK_MAX_BYTES", 1024 * 1024, minimum=1024)
# Notifications out (deployments/notifications/): attempts per delivery, the first
# backoff (doubling after each failed attempt) and the deadline of one whole attempt.
NOTIFY_MAX_ATTEMPTS = env_int("SHIPMATE_NOTIFY_MAX_ATTEMPTS", 5, minimum=1)
NOTIFY_BACKOFF = env_float("SHIPMATE_NOTIFY_BACKOFF", 10, minimum=0.01)
NOTIFY_TIMEOUT = env_float("SHIPMATE_NOTIFY_TIMEOUT", 10, minimum=0.1)
# Shipmate's own address as its users reach it: the links in notifications and commit statuses.
SHIPMATE_URL = env_str("SHIPMATE_URL", "http://127.0.0.1:8000")
if not re.fullmatch(r"https?://[^/\s]+(/\S*)?", SHIPMATE_URL or ""):
    raise ImproperlyConfigured(f"SHIPMATE_URL must be an http(s) URL, not {SHIPMATE_URL!r}")
# A deployment stores at most this many log lines; later ones are counted, not kept.
LOG_MAX_LINES = env_int("SHIPMATE_LOG_MAX_LINES", 200_000, minimum=1)
# One stored line is cut at this many UTF-8 bytes, with a note of how much was cut.
LOG_MAX_LINE_BYTES = env_int("SHIPMATE_LOG_MAX_LINE_BYTES", 65_536, minimum=1024)
# Lines (and bytes) a log writer holds before they are in the database; past either,
# `line()` waits up to LOG_BUFFER_WAIT seconds and then fails the run loudly.
LOG_BUFFER_LINES = env_int("SHIPMATE_LOG_BUFFER_LINES", 50_000, minimum=100)
LOG_BUFFER_BYTES = env_int("SHIPMATE_LOG_BUFFER_BYTES", 64 * 1024 * 1024, minimum=1024 * 1024)
LOG_BUFFER_WAIT = env_int("SHIPMATE_LOG_BUFFER_WAIT", 60, minimum=1)

# The JSON API (/api/v1/, deployments/api/). Requests per token (or per session user) and
# period: second, minute, hour or day.
API_RATE = env_str("SHIPMATE_API_RATE", "600/minute")
if not re.fullmatch(r"[1-9][0-9]*/(s|sec|second|m|min|minute|h|hour|d|day)", API_RATE):
    raise ImproperlyConfigured("SHIPMATE_API_RATE must look like 600/minute (second, minute, hour or day)")
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "deployments.api.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",  # enforces CSRF
    ],
    "DEFAULT_PERMISSION_CLASSES": ["deployments.api.permissions.HasScope"],
    "DEFAULT_THROTTLE_CLASSES": ["deployments.api.throttling.TokenRateThrottle"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "deployments.api.errors.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Shipmate API",
    "DESCRIPTION": "Deploy, approve and follow deployments. Authenticate with `Authorization: Bearer shp_…`.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    # Swagger UI's files come from drf-spectacular-sidecar, not a CDN: Shipmate may run offline.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": "/api/v1/",
    "POSTPROCESSING_HOOKS": [
        "drf_spectacular.hooks.postprocess_schema_enums",
        "deployments.api.schema.add_event_stream",
    ],
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "DeploymentStatusEnum": "deployments.models.deployment.Status",
        "StageStatusEnum": "deployments.models.deployment.StageStatus",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
