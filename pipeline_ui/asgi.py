import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pipeline_ui.settings")

application = get_asgi_application()

from django.conf import settings  # noqa: E402
from django.contrib.staticfiles.handlers import ASGIStaticFilesHandler  # noqa: E402

from .env import env_bool  # noqa: E402

# One-machine installs have no reverse proxy in front, so the app serves its own
# (few, small) static files unless told a proxy does it.
if env_bool("SHIPMATE_SERVE_STATIC", True) and settings.STATIC_URL:
    application = ASGIStaticFilesHandler(application)
