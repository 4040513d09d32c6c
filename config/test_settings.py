"""Settings for the test suite: the real settings plus a cheap password hasher."""

import os

os.environ.setdefault("SECRET_KEY", "tests-only-not-secret")

from config.settings import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Unit tests run tasks in-process; integration tests point the app at a real broker and worker.
CELERY_BROKER_URL = ""
CELERY_TASK_ALWAYS_EAGER = True
# The test client speaks plain HTTP; the HTTPS settings are checked by `check --deploy` tests.
SECURE_SSL_REDIRECT = False
# Serve static files from the source folders; no collectstatic before tests.
WHITENOISE_USE_FINDERS = True
STORAGES = {
    **STORAGES,  # noqa: F405
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
