"""Django settings, read from the environment (see `.env.example` and the README table)."""

from __future__ import annotations

from pathlib import Path

from config.env import (
    ConfigError,
    env_bool,
    env_broker_url,
    env_cache,
    env_database,
    env_int,
    env_list,
    env_str,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("GCA_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ConfigError("SECRET_KEY: required when DEBUG is False")
    SECRET_KEY = "insecure-development-key-only-used-with-DEBUG-True"

ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [])
SITE_URL = env_str("SITE_URL", "http://127.0.0.1:8000")

INSTALLED_APPS = [
    # django.contrib.admin whose site lets the admin role in (dashboard/admin_site.py)
    "dashboard.apps.DashboardAdminConfig",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "django_celery_beat",
    "probes",
    "advisor",
    "dashboard",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "dashboard.middleware.SecurityHeadersMiddleware",  # CSP, Permissions-Policy, no-store
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # A log-in refused by the throttle (config/login_throttle.py) is answered 429.
    "config.login_throttle.LoginThrottleMiddleware",
    # Every page needs a login unless its view is marked login_not_required (healthz, login);
    # DRF views authenticate themselves (agent tokens, sessions).
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "dashboard.middleware.UnstorableTextMiddleware",  # 400 on a NUL in a query or form field
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

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
                "dashboard.context_processors.task_mode",
            ],
        },
    },
]

DATABASES = {"default": env_database("DATABASE_URL", f"sqlite:///{VAR_DIR / 'advisor.sqlite3'}")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# Redis when CACHE_URL is set, so that every gunicorn worker sees the same log-in failures.
CACHES = {"default": env_cache("CACHE_URL")}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
# Django's username/password check, behind the failure throttle (config/login_throttle.py):
# after this many failures within the window from the first, a client is refused until the
# window ends; per (username, client IP), and per client IP whatever the usernames.
AUTHENTICATION_BACKENDS = ["config.login_throttle.ThrottledModelBackend"]
LOGIN_THROTTLE_FAILURES_PER_USER_IP = env_int("LOGIN_THROTTLE_FAILURES_PER_USER_IP", 5, minimum=1)
LOGIN_THROTTLE_FAILURES_PER_IP = env_int("LOGIN_THROTTLE_FAILURES_PER_IP", 20, minimum=1)
LOGIN_THROTTLE_WINDOW_S = env_int("LOGIN_THROTTLE_WINDOW_S", 900, minimum=1)
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/accounts/login/"

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = False
USE_TZ = True

STATIC_URL = "/static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
MEDIA_ROOT = VAR_DIR / "media"

# Security headers; HTTPS-only cookies and HSTS follow SECURE_SSL (off for the local demo).
SECURE_SSL = env_bool("SECURE_SSL", not DEBUG)
SECURE_SSL_REDIRECT = SECURE_SSL
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]  # load balancers probe over plain HTTP
SESSION_COOKIE_SECURE = SECURE_SSL
CSRF_COOKIE_SECURE = SECURE_SSL
SECURE_HSTS_SECONDS = 31536000 if SECURE_SSL else 0
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_SSL
SECURE_HSTS_PRELOAD = SECURE_SSL
# Behind a reverse proxy that terminates TLS: believe its X-Forwarded-Proto (else every request
# looks like plain HTTP and SECURE_SSL redirects forever). Off by default: without a proxy that
# overwrites the header, any client could send it and pass for HTTPS.
TRUST_X_FORWARDED_PROTO = env_bool("TRUST_X_FORWARDED_PROTO", False)
if TRUST_X_FORWARDED_PROTO:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
# Likewise the client address the log-in throttle counts: the last X-Forwarded-For entry (the
# one the proxy appended) instead of REMOTE_ADDR, which behind a proxy is the proxy's for all.
TRUST_X_FORWARDED_FOR = env_bool("TRUST_X_FORWARDED_FOR", False)
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
X_FRAME_OPTIONS = "DENY"
SESSION_COOKIE_HTTPONLY = True

EMAIL_HOST = env_str("EMAIL_HOST", "")
EMAIL_PORT = env_int("EMAIL_PORT", 587, minimum=1)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "gpu-cost-advisor@localhost")
# Without an SMTP host, mail goes to files under var/ so reports are never silently lost.
if EMAIL_HOST:
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
else:
    EMAIL_BACKEND = "django.core.mail.backends.filebased.EmailBackend"
    EMAIL_FILE_PATH = str(VAR_DIR / "mail")

REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
}
SPECTACULAR_SETTINGS = {
    "TITLE": "GPU Cost Advisor API",
    "DESCRIPTION": "Ingest from node agents, assessments, benchmarks and rollouts.",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # A request record's status appears in the ingest rows and column layouts: one enum.
    "ENUM_NAME_OVERRIDES": {"RequestStatusEnum": ["ok", "error", "aborted"]},
}

# Celery: with no broker configured, tasks run eagerly in-process (demo, unit tests).
CELERY_BROKER_URL = env_broker_url("CELERY_BROKER_URL")
CELERY_TASK_ALWAYS_EAGER = not CELERY_BROKER_URL
CELERY_TASK_EAGER_PROPAGATES = True
# Results are kept only for tasks that ask for them (ping); state lives in our own tables.
CELERY_RESULT_BACKEND = env_broker_url("CELERY_RESULT_BACKEND") or CELERY_BROKER_URL or None
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ACKS_LATE = False
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULER = "django_celery_beat.schedulers:DatabaseScheduler"
# Long work runs on its own queue so a slow simulation never delays a rollout step.
CELERY_TASK_ROUTES = {
    "advisor.tasks.sim.*": {"queue": "sim"},
    "advisor.tasks.bench.*": {"queue": "bench"},
    "advisor.tasks.rollout.*": {"queue": "rollout"},
    "dashboard.tasks.whatif_*": {"queue": "sim"},  # the playground's re-simulations
}
CELERY_BEAT_SCHEDULE: dict[str, dict[str, object]] = {
    # Probes: roll up the hours new agent batches and imports touched; delete expired telemetry.
    "probes-rollup-pending": {"task": "probes.tasks.rollup_pending", "schedule": 60.0},
    "probes-retention": {"task": "probes.tasks.retention_apply", "schedule": 24 * 3600.0},
    # Advisor: new clusters get their weekly assessment schedule (a PeriodicTask per cluster).
    "advisor-assessment-schedules": {
        "task": "advisor.tasks.sim.assessment_schedules_ensure",
        "schedule": 3600.0,
        "options": {"queue": "sim"},
    },
    # Rollouts: resume rollouts a dead worker left mid-way; measure ledger entries now due.
    "advisor-rollout-watchdog": {"task": "advisor.tasks.rollout.watchdog", "schedule": 30.0},
    # Benchmark jobs and assessments whose worker died (no heartbeat) end failed.
    "advisor-lost-jobs": {"task": "advisor.tasks.reaper.fail_lost_jobs", "schedule": 60.0},
    # Dashboard: new clusters get their weekly report schedule (a PeriodicTask per cluster).
    "dashboard-report-schedules": {
        "task": "dashboard.tasks.report_schedules_ensure",
        "schedule": 3600.0,
    },
}

# Rollouts: with True, an admin other than the proposer must approve a rollout, and someone
# other than that approver starts it (four eyes).
ROLLOUT_SECOND_APPROVER = env_bool("ROLLOUT_SECOND_APPROVER", False)

# Benchmark jobs and assessments: the running task's worker touches the row's heartbeat every
# JOB_HEARTBEAT_INTERVAL_S; beat fails a running row whose heartbeat is older than
# JOB_HEARTBEAT_TIMEOUT_S (its worker died: SIGKILL, OOM, reboot). At least 4 beats' worth.
JOB_HEARTBEAT_INTERVAL_S = 30.0
JOB_HEARTBEAT_TIMEOUT_S = env_int("JOB_HEARTBEAT_TIMEOUT_S", 600, minimum=120)

# Agents push at most this many bytes per request (gzip-decoded); bigger batches are refused.
INGEST_MAX_BODY_BYTES = env_int("INGEST_MAX_BODY_BYTES", 8 * 1024 * 1024, minimum=1024)
DATA_UPLOAD_MAX_MEMORY_SIZE = INGEST_MAX_BODY_BYTES
# Assessments one user may start per minute; beyond: 429 with Retry-After (schedules: no limit).
ASSESSMENTS_PER_USER_PER_MINUTE = env_int("ASSESSMENTS_PER_USER_PER_MINUTE", 10, minimum=1)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}
