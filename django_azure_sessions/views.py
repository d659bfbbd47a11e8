"""A page where users see where they are signed in and sign out everywhere else.

Include ``django_azure_sessions.urls`` (say at ``account/sessions/``); the page extends
``django_azure_sessions/base.html``, which a site overrides to fit its layout.
"""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.views.decorators.http import require_POST

from .users import sign_out_everywhere, stored_id, user_sessions


@login_required
def sessions(request: HttpRequest) -> HttpResponse:
    context = {
        "sessions": user_sessions(request.user),
        "current": stored_id(request.session),
        "signed_out": request.GET.get("signed_out"),
    }
    return TemplateResponse(request, "django_azure_sessions/sessions.html", context)


@login_required
@require_POST
def sign_out_others(request: HttpRequest) -> HttpResponse:
    count = sign_out_everywhere(request.user, keep=request.session)
    url = reverse("django_azure_sessions:sessions")
    return HttpResponseRedirect(f"{url}?signed_out={count}")
