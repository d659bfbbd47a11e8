from __future__ import annotations

from django.urls import path

from . import views

app_name = "django_azure_sessions"

urlpatterns = [
    path("", views.sessions, name="sessions"),
    path("sign-out/", views.sign_out_one, name="sign_out"),
    path("sign-out-others/", views.sign_out_others, name="sign_out_others"),
]
