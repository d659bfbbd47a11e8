"""A small shop whose cart, visit counter and sign-in all live in the session."""

from __future__ import annotations

import dataclasses
import json
from decimal import Decimal
from typing import Any
from urllib.parse import urlsplit

import django
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.sessions.backends.base import SessionBase
from django.db import connections
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_POST

from django_azure_sessions.conf import app_settings
from django_azure_sessions.core import keys


@dataclasses.dataclass(frozen=True)
class Product:
    name: str
    price: Decimal


PRODUCTS = {
    "coffee": Product("Coffee beans, 1 kg", Decimal("18.50")),
    "mug": Product("Enamel mug", Decimal("9.00")),
    "filters": Product("Paper filters, 100", Decimal("4.20")),
}

# Values that stay out of the page: the auth hash is derived from the password hash.
HIDDEN_KEYS = {"_auth_user_hash"}


def _cart(session: SessionBase) -> dict[str, int]:
    return {slug: qty for slug, qty in session.get("cart", {}).items() if slug in PRODUCTS}


def _cart_lines(cart: dict[str, int]) -> tuple[list[dict[str, Any]], Decimal]:
    lines = [
        {
            "slug": slug,
            "product": PRODUCTS[slug],
            "quantity": qty,
            "subtotal": PRODUCTS[slug].price * qty,
        }
        for slug, qty in cart.items()
    ]
    return lines, sum((line["subtotal"] for line in lines), Decimal("0.00"))


def home(request: HttpRequest) -> HttpResponse:
    request.session["visits"] = request.session.get("visits", 0) + 1
    lines, total = _cart_lines(_cart(request.session))
    return render(
        request,
        "demo/home.html",
        {
            "products": PRODUCTS,
            "lines": lines,
            "total": total,
            "visits": request.session["visits"],
        },
    )


def _product(slug: str) -> str:
    if slug not in PRODUCTS:
        raise Http404("No such product")
    return slug


@require_POST
def cart_add(request: HttpRequest, product: str) -> HttpResponse:
    slug = _product(product)
    cart = _cart(request.session)
    cart[slug] = cart.get(slug, 0) + 1
    request.session["cart"] = cart
    return redirect("home")


@require_POST
def cart_remove(request: HttpRequest, product: str) -> HttpResponse:
    slug = _product(product)
    cart = _cart(request.session)
    if cart.get(slug, 0) > 1:
        cart[slug] -= 1
    else:
        cart.pop(slug, None)
    request.session["cart"] = cart
    return redirect("home")


@require_POST
def cart_empty(request: HttpRequest) -> HttpResponse:
    request.session.pop("cart", None)
    return redirect("home")


async def cart_json(request: HttpRequest) -> JsonResponse:
    """The cart through the session's async API (Django >= 5.1), in a thread before that."""
    if django.VERSION >= (5, 1):
        cart = await request.session.aget("cart", {})
    else:
        cart = await sync_to_async(request.session.get)("cart", {})
    return JsonResponse({"cart": cart})


def describe_store() -> str:
    """Where sessions are kept, without passwords, keys or tokens."""
    engine = settings.SESSION_ENGINE.rsplit(".", 1)[-1]
    if engine == "sql":
        alias = app_settings.SQL.DATABASE
        database = connections[alias].settings_dict
        if connections[alias].vendor == "sqlite":
            where = f"SQLite file {database['NAME']}"
        else:
            where = f"{connections[alias].display_name} at {database['HOST'] or 'localhost'}"
        return f"table django_azure_sessions in database {alias!r} ({where})"
    if engine == "redis":
        redis = app_settings.REDIS
        if redis.CACHE_ALIAS:
            return f"Redis of the cache {redis.CACHE_ALIAS!r}"
        url = urlsplit(redis.URL or "")
        return f"Redis at {url.scheme}://{url.hostname}:{url.port or 6379}{url.path}"
    if engine == "table":
        table = app_settings.TABLE
        if table.CONNECTION_STRING:
            parts = dict(
                part.split("=", 1) for part in table.CONNECTION_STRING.split(";") if "=" in part
            )
            where = parts.get("TableEndpoint") or f"account {parts.get('AccountName', '?')}"
        else:
            where = urlsplit(table.ACCOUNT_URL or "").netloc
        return f"table {table.TABLE_NAME!r} at {where}"
    return settings.SESSION_ENGINE


def _shown(key: str, value: Any) -> str:
    if key in HIDDEN_KEYS:
        return "(hidden)"
    return json.dumps(value, default=str, sort_keys=True)


def session_info(request: HttpRequest) -> HttpResponse:
    session = request.session
    items = [(key, _shown(key, session[key])) for key in sorted(session.keys())]
    stored_as = None
    if session.session_key is not None and app_settings.HASH_KEYS:
        stored_as = keys.storage_id(session.session_key)[:16]
    user_sessions = None
    if request.user.is_authenticated and hasattr(type(session), "get_storage"):
        user_sessions = len(type(session).get_storage().user_records(str(request.user.pk)))
    return render(
        request,
        "demo/session.html",
        {
            "store": describe_store(),
            "key_prefix": app_settings.KEY_PREFIX,
            "items": items,
            "has_key": session.session_key is not None,
            "stored_as": stored_as,
            "expiry_date": session.get_expiry_date(),
            "browser_close": session.get_expire_at_browser_close(),
            "user_sessions": user_sessions,
        },
    )


def _signed_out() -> JsonResponse:
    return JsonResponse({"error": "sign in first"}, status=403)


@require_GET
def load_counters(request: HttpRequest) -> JsonResponse:
    """The session's ``counter_<client>`` values: the read of ``benchmarks.load``."""
    if not request.user.is_authenticated:
        return _signed_out()
    counters = {k: v for k, v in request.session.items() if k.startswith("counter_")}
    return JsonResponse({"user": request.user.get_username(), "counters": counters})


@require_POST
def load_increment(request: HttpRequest, client: int) -> JsonResponse:
    """Add one to this client's own counter: the write of ``benchmarks.load``.

    Clients that share a session each write their own key, so a store that merges
    concurrent saves key by key loses none of the increments.
    """
    if not request.user.is_authenticated:
        return _signed_out()
    key = f"counter_{client}"
    request.session[key] = request.session.get(key, 0) + 1
    return JsonResponse({"key": key, "value": request.session[key]})
