import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pipeline_ui.settings")

app = Celery("shipmate")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
