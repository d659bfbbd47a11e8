from __future__ import annotations

from django.contrib.auth import views as auth_views
from django.urls import path

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("cart/add/<slug:product>/", views.cart_add, name="cart-add"),
    path("cart/remove/<slug:product>/", views.cart_remove, name="cart-remove"),
    path("cart/empty/", views.cart_empty, name="cart-empty"),
    path("cart.json", views.cart_json, name="cart-json"),
    path("session/", views.session_info, name="session"),
    path("load/", views.load_counters, name="load-counters"),
    path("load/<int:client>/", views.load_increment, name="load-increment"),
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="demo/login.html"),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
