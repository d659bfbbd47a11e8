from __future__ import annotations

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


urlpatterns = [
    path("set/", session_set),
    path("get/", session_get),
    path("noop/", noop),
    path("account/sessions/", include("django_azure_sessions.urls")),
]
