"""Errors on the dashboard's pages as HTML pages (the status kept) that say what to do, never the API's JSON:
a page route's bad query value, a form posted with an expired CSRF token. ``/ui/api`` keeps the JSON shape."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, Response
from fastapi.routing import APIRoute

from ivrsim.api.errors import ApiError
from ivrsim.ui.templating import render

#: What a person does about each error code on a page.
ADVICE = {
    "csrf_failed": ("This form expired", "The page was open from an earlier session, or the server restarted: reload the page and send the form again."),
    "body_too_large": ("The form is too large", "Send less text and try again."),
    "invalid_form": ("The form could not be read", "Reload the page and send the form again."),
}


def _field_names(error: RequestValidationError) -> str:
    names = [str(problem["loc"][-1]) for problem in error.errors() if problem.get("loc")]
    return ", ".join(dict.fromkeys(names)) or "the address"


def error_page(request: Request, status_code: int, title: str, advice: str) -> HTMLResponse:
    """An HTML error page for a person, with the nav when the browser is logged in."""
    from ivrsim.ui.auth import SESSION_COOKIE, ui_auth

    session = ui_auth(request).session(request.cookies.get(SESSION_COOKIE))
    return render(request, "error.html", status_code=status_code, session=session, title=title, advice=advice, back=request.url.path if request.url.path != "/ui/logout" else "/ui/calls")


class PageRoute(APIRoute):
    """A page route: its validation errors and ApiErrors (4xx/5xx) become HTML error pages; redirects
    (the login redirect is an ApiError with a 303) pass through to the app's handler."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def page_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as error:
                return error_page(request, 422, "This address has a value the page cannot use",
                                  f"Check {_field_names(error)} in the address, or start again from the menu above.")
            except ApiError as error:
                if error.status < 400:
                    raise
                title, advice = ADVICE.get(error.code, ("That did not work", error.message))
                return error_page(request, error.status, title, advice)

        return page_handler
