from __future__ import annotations

from django.contrib.auth.views import LogoutView
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import include, path


def session_set(request: HttpRequest) -> HttpResponse:
    for key, value in request.GET.items():
        request.session[key] = value
    return JsonResponse(dict(request.session.items()))


def session_get(request: HttpRequest) -> HttpResponse:
    return JsonResponse(dict(request.session.items()))


def noop(request: HttpRequest) -> HttpResponse:
    return HttpResponse("ok")


def session_status(request: HttpRequest) -> HttpResponse:
    data = dict(request.session.items())
    return JsonResponse(
        {"data": data, "unavailable": getattr(request.session, "unavailable", False)}
    )


urlpatterns = [
    path("set/", session_set),
    path("get/", session_get),
    path("noop/", noop),
    path("status/", session_status),
    path("account/sessions/", include("django_azure_sessions.urls")),
    path("logout/", LogoutView.as_view(), name="logout"),
]
