"""The sessions admin in a real browser (headless Chromium), on each engine's store.

The demo user (a superuser) finds another user's sessions by username, revokes one through
the confirmation page, and that user's browser is signed out; "Recent actions" shows it.
Screenshots of each page go to .artifacts/screenshots/.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User

from .fixtures.browser import (
    ANDROID_CHROME,
    WINDOWS_CHROME,
    LiveDemo,
    click_and_wait,
    screenshots,
    sign_in,
)

pytestmark = [pytest.mark.django_db(transaction=True, databases="__all__"), pytest.mark.slow]

SESSIONS = "/admin/django_azure_sessions/session/"


def test_an_admin_revokes_a_users_session(
    live_demo: LiveDemo, browsers: Callable[..., Any]
) -> None:
    from selenium.webdriver.common.by import By

    User.objects.create_user("alice", "alice@example.com", "alice-password")
    admin, phone = browsers(WINDOWS_CHROME), browsers(ANDROID_CHROME)
    phone.get(live_demo.url("/login/"))
    phone.find_element(By.NAME, "username").send_keys("alice")
    phone.find_element(By.NAME, "password").send_keys("alice-password")
    click_and_wait(phone, phone.find_element(By.CSS_SELECTOR, "main form button[type=submit]"))
    assert "Signed in as alice" in phone.find_element(By.TAG_NAME, "header").text
    sign_in(admin, live_demo)

    admin.get(live_demo.url(SESSIONS))
    screenshots(admin, f"{live_demo.name}-admin-sessions")
    admin.find_element(By.ID, "searchbar").send_keys("ALICE")  # usernames match in any case
    click_and_wait(admin, admin.find_element(By.CSS_SELECTOR, "#changelist-search [type=submit]"))
    found = admin.find_element(By.CSS_SELECTOR, "#search-result p.das-found").text
    assert found.startswith("Sessions of alice: 1 live session.")
    rows = admin.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 1
    assert "Chrome Mobile on Android" in rows[0].text
    screenshots(admin, f"{live_demo.name}-admin-search")

    click_and_wait(admin, rows[0].find_element(By.CSS_SELECTOR, "th a"))
    screenshots(admin, f"{live_demo.name}-admin-session")
    click_and_wait(admin, admin.find_element(By.ID, "revoke-session"))
    assert admin.find_elements(By.CSS_SELECTOR, "body.delete-confirmation")
    assert not admin.find_elements(By.ID, "own-session-warning")  # alice's, not the admin's
    screenshots(admin, f"{live_demo.name}-admin-revoke-confirmation")
    click_and_wait(admin, admin.find_element(By.ID, "confirm-revoke"))
    message = admin.find_element(By.CSS_SELECTOR, "ul.messagelist li.success").text
    assert message == "The session was revoked: its user is signed out of it."

    phone.get(live_demo.url("/session/"))
    header = phone.find_element(By.TAG_NAME, "header").text
    assert "Signed in as" not in header
    assert "Sign in" in header

    admin.get(live_demo.url("/admin/"))
    recent = admin.find_element(By.ID, "recent-actions-module").text
    assert "of alice" in recent
    screenshots(admin, f"{live_demo.name}-admin-recent-actions")
