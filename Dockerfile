# Shipmate's own image: one image for the web app (uvicorn), the Celery worker and
# Celery beat; compose.yaml picks the process with `command`.
#
#   docker build -t shipmate .
#   docker compose up -d          # see compose.yaml
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DJANGO_SETTINGS_MODULE=pipeline_ui.settings

# The checkout stage drives the git CLI; ssh is for ssh:// and scp-style repository URLs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends git openssh-client \
    && rm -rf /var/lib/apt/lists/*

# A fixed uid/gid so volume ownership stays the same across rebuilds.
RUN groupadd --system --gid 10001 shipmate \
    && useradd --system --uid 10001 --gid shipmate --home-dir /app --shell /usr/sbin/nologin shipmate

WORKDIR /app

# Requirements first: code changes then reuse the installed-packages layer.
COPY requirements.lock .
RUN pip install --no-cache-dir --require-hashes -r requirements.lock

COPY . .

# Settings refuse to load without SECRET_KEY; collectstatic needs no real one. The
# dummy key and the throwaway state dir exist for this one command only and are not
# persisted in the image's environment.
RUN SECRET_KEY=collectstatic-only-not-a-secret SHIPMATE_STATE_DIR=/tmp/collectstatic-state \
        python manage.py collectstatic --no-input -v0 \
    && rm -rf /tmp/collectstatic-state

# Created here (owned by the app user) so a named volume mounted on it starts with
# the right owner: Docker copies the ownership into an empty named volume.
RUN mkdir -p /var/lib/shipmate && chown shipmate:shipmate /var/lib/shipmate
ENV SHIPMATE_STATE_DIR=/var/lib/shipmate

USER shipmate

EXPOSE 8000
# ASGI is required: live logs are server-sent events from an async view. The short
# graceful-shutdown timeout ends open SSE streams (browsers reconnect with
# Last-Event-ID) instead of waiting for them until Docker kills the container.
CMD ["uvicorn", "pipeline_ui.asgi:application", "--host", "0.0.0.0", "--port", "8000", \
     "--timeout-graceful-shutdown", "5"]
