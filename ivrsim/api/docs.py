"""The API's own documentation, offline: /docs (Swagger UI) and /redoc (ReDoc) from files vendored in the
package (``ivrsim/api/static/``, licences beside them), and an OpenAPI document that says what the server
really does: the one error shape, the verified numbers and the catalog's voices."""

from __future__ import annotations

from importlib import resources
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

from ivrsim.api.errors import (
    BODY_ERRORS,
    FASTIFY_SHAPED_PREFIX,
    ErrorResponse,
    error_responses,
)
from ivrsim.api.schemas import HTTP_URL_PATTERN

#: Where the vendored files are served.
STATIC_PREFIX = "/_static"
#: FastAPI's own validation-error schemas: never answered by this server (errors.py answers instead).
_UNUSED_SCHEMAS = ("HTTPValidationError", "ValidationError")
_ERROR_REF = {"$ref": "#/components/schemas/ErrorResponse"}
#: The error of /api/v1 (the Canonical API answers in Fastify's shape: ivrsim/api/routes/canonical.py).
_CANONICAL_ERROR_REF = {"$ref": "#/components/schemas/CanonicalErrorResponse"}


def static_dir() -> str:
    return str(resources.files("ivrsim.api") / "static")


def install_docs(app: FastAPI) -> None:
    """Serve /docs, /redoc and their assets from the package; create the app with docs_url=None, redoc_url=None."""
    app.mount(STATIC_PREFIX, StaticFiles(directory=static_dir()), name="static")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API docs",
            swagger_js_url=f"{STATIC_PREFIX}/swagger-ui/swagger-ui-bundle.js",
            swagger_css_url=f"{STATIC_PREFIX}/swagger-ui/swagger-ui.css",
            swagger_favicon_url=f"{STATIC_PREFIX}/swagger-ui/favicon-32x32.png",
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} - API reference",
            redoc_js_url=f"{STATIC_PREFIX}/redoc/redoc.standalone.js",
            redoc_favicon_url=f"{STATIC_PREFIX}/swagger-ui/favicon-32x32.png",
            with_google_fonts=False,
        )

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title, version=app.version, summary=app.summary, description=app.description, routes=app.routes
            )
            _document_errors(document)
            app.openapi_schema = _honest(document, getattr(app.state, "services", None))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _document_errors(document: dict[str, Any]) -> None:
    """Every operation lists the errors the server can give it whatever the route says (its key, its
    parameters, its body), in the one error shape."""
    components = document.setdefault("components", {})
    components.setdefault("schemas", {})["ErrorResponse"] = ErrorResponse.model_json_schema(ref_template="#/components/schemas/{model}")
    components["schemas"].update(components["schemas"]["ErrorResponse"].pop("$defs", {}))
    for path, operations in document.get("paths", {}).items():
        fastify = path.startswith(FASTIFY_SHAPED_PREFIX)  # parses its own bodies (no 422), in Fastify's shape
        for operation in operations.values():
            statuses: list[int] = []
            if operation.get("security"):  # the API key (deps.require_api_key)
                statuses.append(401)
            parameters = operation.get("parameters", [])
            if (parameters or "requestBody" in operation) and not fastify:
                statuses.append(422)
            if "requestBody" in operation:
                statuses.extend(status for status in BODY_ERRORS if not (fastify and status == 422))
            if any(p.get("in") == "path" for p in parameters):
                statuses.append(404)
            responses = operation.setdefault("responses", {})
            for status, response in list(responses.items()):  # FastAPI's own 422 (a route that did not say)
                if "HTTPValidationError" in str(response.get("content", {})):
                    del responses[status]
            for status, entry in error_responses(*statuses).items():
                if str(status) not in responses:
                    responses[str(status)] = {
                        "description": entry["description"],
                        "content": {"application/json": {"schema": dict(_CANONICAL_ERROR_REF if fastify else _ERROR_REF)}},
                        **({"headers": entry["headers"]} if "headers" in entry else {}),
                    }


def _honest(document: dict[str, Any], services: Any) -> dict[str, Any]:
    """Drop FastAPI's ``detail`` schemas, and narrow what depends on this server's configuration (its
    verified numbers, its voice catalog) to the values it accepts."""
    schemas = document.get("components", {}).get("schemas", {})
    for name in _UNUSED_SCHEMAS:
        schemas.pop(name, None)
    if services is not None:
        call = schemas.get("CallCreate", {}).get("properties", {})
        if "from" in call:
            call["from"]["enum"] = list(services.settings.verified_numbers)
        if "audio_url" in call:  # without media roots, only http(s) URLs; with them, paths inside them too
            call["audio_url"]["pattern"] = r"\S" if services.settings.media_roots else HTTP_URL_PATTERN
        voice = schemas.get("TtsIn", {}).get("properties", {}).get("voice")
        if voice is not None:
            voice.pop("anyOf", None)
            voice["type"] = ["string", "null"]
            voice["enum"] = [v.id for v in services.catalog] + [None]
    return document
