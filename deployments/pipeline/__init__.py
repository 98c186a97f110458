"""The pipeline: plain Python stages and targets. No Django request, no Celery."""
