from __future__ import annotations

from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("account/sessions/", include("django_azure_sessions.urls")),
    path("", include("testproject.demo.urls")),
]
