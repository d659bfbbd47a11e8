"""The demo site (``testproject/``) on the SQL engine: sign in, a cart in the session, sign out."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ImproperlyConfigured
from django.core.management.sql import emit_post_migrate_signal
from django.test import Client, override_settings

from django_azure_sessions.models import Session
from testproject import settings as demo_settings
from testproject.demo.apps import DEMO_PASSWORD, DEMO_USERNAME, create_demo_user
from testproject.demo.views import describe_store
from testproject.environment import (
    AZURITE_CONNECTION_STRING,
    cache_settings,
    database_from_url,
    session_settings,
)
from tests.fixtures.demo import demo_site as demo_site_for
from tests.fixtures.redis import delete_prefix

ROOT = Path(__file__).resolve().parent.parent
PREFIX = "demo-test:"
SQL_ENGINE = "django_azure_sessions.backends.sql"


@pytest.fixture
def demo_site() -> Iterator[None]:
    with demo_site_for(SQL_ENGINE, {"KEY_PREFIX": PREFIX, "SQL": {"DATABASE": "default"}}):
        yield


@pytest.fixture
def demo_client(demo_site: None, db: None) -> Client:
    create_demo_user()
    return Client()


def cookie(client: Client) -> str:
    return client.cookies["sessionid"].value


def stored_keys() -> set[str]:
    return set(Session.objects.values_list("key", flat=True))


def test_sign_in_fill_the_cart_and_sign_out(demo_client: Client) -> None:
    page = demo_client.get("/")
    assert page.status_code == 200
    assert b'id="visits">1<' in page.content
    for product in ("coffee", "coffee", "mug"):
        assert demo_client.post(f"/cart/add/{product}/").status_code == 302
    assert demo_client.post("/cart/remove/mug/").status_code == 302
    assert demo_client.post("/cart/add/filters/").status_code == 302
    page = demo_client.get("/")
    assert b'id="visits">2<' in page.content
    assert b'id="total">41.20<' in page.content  # 2 x 18.50 + 4.20
    anonymous_key = cookie(demo_client)

    login_page = demo_client.get("/login/")
    assert DEMO_USERNAME in login_page.content.decode()
    assert DEMO_PASSWORD in login_page.content.decode()
    response = demo_client.post("/login/", {"username": DEMO_USERNAME, "password": DEMO_PASSWORD})
    assert response.status_code == 302
    assert response["Location"] == "/"

    # Signing in gives the session a new key, keeps its data and removes the old record.
    assert cookie(demo_client) != anonymous_key
    assert demo_client.session["cart"] == {"coffee": 2, "filters": 1}
    assert PREFIX + hashlib.sha256(anonymous_key.encode()).hexdigest() not in stored_keys()
    page = demo_client.get("/")
    assert f"Signed in as <strong>{DEMO_USERNAME}</strong>" in page.content.decode()

    signed_in_key = cookie(demo_client)
    response = demo_client.post("/logout/")
    assert response.status_code == 302
    page = demo_client.get("/")
    assert "Signed in" not in page.content.decode()
    assert 'id="cart">Your cart is empty.' in page.content.decode()
    assert PREFIX + hashlib.sha256(signed_in_key.encode()).hexdigest() not in stored_keys()


def test_session_page_shows_engine_and_data_but_no_key_or_secret(demo_client: Client) -> None:
    demo_client.post("/cart/add/coffee/")
    demo_client.post("/login/", {"username": DEMO_USERNAME, "password": DEMO_PASSWORD})
    page = demo_client.get("/session/").content.decode()
    assert SQL_ENGINE in page
    assert "table django_azure_sessions in database &#x27;default&#x27;" in page
    assert "_auth_user_id" in page
    assert "&quot;coffee&quot;: 1" in page
    assert 'id="user-sessions">1 signed-in session' in page
    assert "<code>(hidden)</code>" in page  # _auth_user_hash
    key = cookie(demo_client)
    assert key not in page
    assert demo_client.session["_auth_user_hash"] not in page
    assert demo_settings.SECRET_KEY not in page
    # What is shown instead of the key is the start of its hash, which the store keeps.
    assert f"<code>{hashlib.sha256(key.encode()).hexdigest()[:16]}…</code>" in page


def test_every_page_says_the_demo_user_is_the_admin(demo_client: Client) -> None:
    for url in ("/", "/session/", "/login/"):
        page = " ".join(demo_client.get(url).content.decode().split())
        assert (
            f"The demo user, <code>{DEMO_USERNAME}</code> (password <code>{DEMO_PASSWORD}</code>),"
            " is also the site's admin"
        ) in page


def test_where_you_are_signed_in_is_inside_the_demos_layout(demo_client: Client) -> None:
    demo_client.post("/login/", {"username": DEMO_USERNAME, "password": DEMO_PASSWORD})
    page = demo_client.get("/account/sessions/").content.decode()
    assert "<title>Where you are signed in · django-azure-sessions demo</title>" in page
    assert '<a href="/session/">Session</a>' in page  # the demo's navigation
    assert "Back to the site" not in page  # not the package's own layout
    assert page.count("This device") == 1


def test_the_store_keeps_a_hash_of_the_cookie_not_the_cookie(demo_client: Client) -> None:
    demo_client.post("/cart/add/mug/")
    key = cookie(demo_client)
    assert stored_keys() == {PREFIX + hashlib.sha256(key.encode()).hexdigest()}


def test_cart_json_reads_the_session_from_an_async_view(demo_client: Client) -> None:
    demo_client.post("/cart/add/mug/")
    demo_client.post("/cart/add/mug/")
    assert demo_client.get("/cart.json").json() == {"cart": {"mug": 2}}


def test_cart_views_refuse_get_and_unknown_products(demo_client: Client) -> None:
    assert demo_client.get("/cart/add/mug/").status_code == 405
    assert demo_client.post("/cart/add/teapot/").status_code == 404
    assert demo_client.post("/cart/empty/").status_code == 302


def test_load_views_count_each_clients_own_key(demo_client: Client) -> None:
    assert demo_client.get("/load/").status_code == 403
    assert demo_client.post("/load/3/").status_code == 403
    demo_client.post("/login/", {"username": DEMO_USERNAME, "password": DEMO_PASSWORD})
    assert demo_client.post("/load/3/").json() == {"key": "counter_3", "value": 1}
    assert demo_client.post("/load/3/").json()["value"] == 2
    assert demo_client.post("/load/4/").json()["value"] == 1
    assert demo_client.get("/load/").json() == {
        "user": DEMO_USERNAME,
        "counters": {"counter_3": 2, "counter_4": 1},
    }
    assert demo_client.get("/load/3/").status_code == 405


def test_post_migrate_creates_the_demo_user_once(demo_site: None, db: None) -> None:
    users = get_user_model().objects
    assert not users.filter(username=DEMO_USERNAME).exists()
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
    emit_post_migrate_signal(verbosity=0, interactive=False, db="default")
    user = users.get(username=DEMO_USERNAME)
    assert user.check_password(DEMO_PASSWORD)
    assert user.is_staff


def test_environment_picks_the_engine_and_configures_every_store() -> None:
    engine, config = session_settings({})
    assert engine == SQL_ENGINE
    assert config == {
        "KEY_PREFIX": "demo:",
        "BASE_TEMPLATE": "demo/base.html",
        "SQL": {"DATABASE": "default"},
        "REDIS": {"URL": "redis://127.0.0.1:6379/0"},
        "TABLE": {"CONNECTION_STRING": AZURITE_CONNECTION_STRING, "TABLE_NAME": "demosessions"},
    }
    engine, config = session_settings({"DAS_ENGINE": "redis", "DAS_REDIS_URL": "redis://r:6380/2"})
    assert engine == "django_azure_sessions.backends.redis"
    assert config["REDIS"] == {"URL": "redis://r:6380/2"}
    assert config["SQL"] == {"DATABASE": "default"}  # for migratesessions --from sql
    engine, config = session_settings({"DAS_ENGINE": " Table "})
    assert engine == "django_azure_sessions.backends.table"
    assert config["TABLE"]["CONNECTION_STRING"] == AZURITE_CONNECTION_STRING
    with pytest.raises(ImproperlyConfigured, match="DAS_ENGINE"):
        session_settings({"DAS_ENGINE": "memcached"})


def test_environment_can_pick_djangos_own_engines_for_comparisons() -> None:
    assert session_settings({"DAS_ENGINE": "django-db"})[0] == (
        "django.contrib.sessions.backends.db"
    )
    env = {"DAS_ENGINE": "django-cache", "DAS_REDIS_URL": "redis://r/1", "DAS_KEY_PREFIX": "p:"}
    assert session_settings(env)[0] == "django.contrib.sessions.backends.cache"
    assert cache_settings(env) == {
        "default": {
            "BACKEND": "django_redis.cache.RedisCache",
            "LOCATION": "redis://r/1",
            "KEY_PREFIX": "p:",
        }
    }
    assert cache_settings({})["default"]["BACKEND"].endswith("LocMemCache")


def test_database_urls() -> None:
    default = Path("/srv/demo.sqlite3")
    assert database_from_url(None, default) == {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": default,
    }
    assert database_from_url("sqlite:////tmp/x.db", default)["NAME"] == "/tmp/x.db"
    assert database_from_url("sqlite:///x.db", default)["NAME"] == "x.db"
    assert database_from_url("postgres://u:p%40ss@db.example:5433/shop", default) == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "shop",
        "USER": "u",
        "PASSWORD": "p@ss",
        "HOST": "db.example",
        "PORT": "5433",
        "OPTIONS": {},
    }
    mysql = database_from_url("mysql://root@127.0.0.1/test", default)
    assert mysql["ENGINE"] == "django.db.backends.mysql"
    assert mysql["OPTIONS"] == {"charset": "utf8mb4"}
    assert database_from_url("mssql://u:p@h/db?driver=ODBC+Driver+18", default)["OPTIONS"] == {
        "driver": "ODBC Driver 18"
    }
    with pytest.raises(ImproperlyConfigured, match="oracle"):
        database_from_url("oracle://h/db", default)


def test_store_description_leaves_credentials_out() -> None:
    with override_settings(
        SESSION_ENGINE="django_azure_sessions.backends.redis",
        AZURE_SESSIONS={"REDIS": {"URL": "rediss://:s3cret-key@cache.example:6380/1"}},
    ):
        assert describe_store() == "Redis at rediss://cache.example:6380/1"
    account_key = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq"
    with override_settings(
        SESSION_ENGINE="django_azure_sessions.backends.table",
        AZURE_SESSIONS={"TABLE": {"CONNECTION_STRING": AZURITE_CONNECTION_STRING}},
    ):
        description = describe_store()
        assert description.endswith("at http://127.0.0.1:10002/devstoreaccount1")
        assert account_key not in description
    with override_settings(
        SESSION_ENGINE="django_azure_sessions.backends.table",
        AZURE_SESSIONS={
            "TABLE": {"ACCOUNT_URL": "https://acct.table.core.windows.net/?sv=x&sig=y"}
        },
    ):
        assert describe_store() == "table 'djangosessions' at acct.table.core.windows.net"


@pytest.mark.slow
def test_manage_py_migrates_and_checks_a_fresh_demo(tmp_path: Path) -> None:
    """What ``scripts/demo`` runs before ``runserver``, on a new SQLite file; then the README's
    ``migratesessions --from sql --to redis``, which finds both stores configured."""
    database = tmp_path / "demo.sqlite3"
    prefix = f"demo-{uuid.uuid4().hex[:8]}:"
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "testproject.settings",
        "DAS_ENGINE": "sql",
        "DAS_DATABASE_URL": f"sqlite:///{database}",
        "DAS_REDIS_URL": settings.REDIS_URL,
        "DAS_KEY_PREFIX": prefix,
    }

    def manage(*command: str) -> str:
        return subprocess.run(
            [sys.executable, str(ROOT / "testproject" / "manage.py"), *command],
            env=env,
            check=True,
            timeout=120,
            cwd=tmp_path,
            capture_output=True,
            text=True,
        ).stdout

    manage("migrate", "--noinput", "-v0")
    manage("check", "--fail-level", "WARNING")
    with sqlite3.connect(database) as connection:
        users = connection.execute(
            "SELECT is_superuser FROM auth_user WHERE username = ?", (DEMO_USERNAME,)
        ).fetchall()
        tables = {row[0] for row in connection.execute("SELECT name FROM sqlite_master")}
    assert users == [(1,)]
    assert "django_azure_sessions" in tables

    create = "from django_azure_sessions.backends.sql import SessionStore; "
    create += "s = SessionStore(); s['cart'] = {'mug': 1}; s.save(); print(s.session_key)"
    key = manage("shell", "-c", create).split()[-1]  # Django 5.2 says what it imported first
    try:
        out = manage("migratesessions", "--from", "sql", "--to", "redis")
        assert out.startswith("Copied 1 sessions from django_azure_sessions.backends.sql to ")
        read = "from django_azure_sessions.backends.redis import SessionStore; "
        read += f"print(SessionStore({key!r})['cart'])"
        assert manage("shell", "-c", read).splitlines()[-1] == "{'mug': 1}"
    finally:
        with redis.Redis.from_url(settings.REDIS_URL) as client:
            delete_prefix(client, prefix)
