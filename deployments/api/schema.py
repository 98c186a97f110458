"""Tells drf-spectacular how the token authentication looks in OpenAPI."""

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class TokenAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "deployments.api.authentication.TokenAuthentication"
    name = "accessToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "shp_…",
            "description": "A personal access token from the Tokens page.",
        }


EVENTS_PATH = "/api/v1/deployments/{id}/events"


def add_event_stream(result: dict[str, Any], generator: Any, request: Any, public: bool) -> dict[str, Any]:
    """drf-spectacular sees DRF views only; the live log stream is a plain async view
    (deployments/api/events.py), so its operation is written here."""
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    result["paths"][EVENTS_PATH] = {
        "get": {
            "operationId": "deployments_events_retrieve",
            "summary": "The live log as server-sent events",
            "description": (
                "The deployment page's stream. Each event's `id` is a log entry id: reconnect with "
                "`Last-Event-ID` (or `?after=`) to resume with no gap and no repeat. With "
                "`?format=text` every line is one `line` event whose data is the line; "
                "`stage-<name>` and `status` events report progress; `end` (data: the final "
                "status) closes the stream."
            ),
            "tags": ["deployments"],
            "parameters": [
                {"in": "path", "name": "id", "required": True, "schema": {"type": "integer"}},
                {"in": "query", "name": "after", "schema": {"type": "string"}},
                {"in": "query", "name": "format", "schema": {"type": "string", "enum": ["text"]}},
                {"in": "header", "name": "Last-Event-ID", "schema": {"type": "string"}},
            ],
            "security": [{"accessToken": []}, {"cookieAuth": []}],
            "responses": {
                "200": {
                    "description": "An event stream.",
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **{code: {"description": "", "content": error} for code in ("401", "403", "404")},
            },
        }
    }
    return result
