"""Notifications out: channels (a signed JSON webhook, a Slack-compatible incoming
webhook, commit statuses on GitHub or GitLab) subscribed to deployment and lock events
of environments or placements, delivered from a Celery queue of their own. A nested
app (label `notifications`) so its migrations never clash with those of `deployments`."""
