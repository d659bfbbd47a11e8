"""'Where you are signed in' in a real browser (headless Chromium), on each engine's store.

Two browsers sign in as one user; the first sees both sessions and signs the other out, whose
next request is anonymous. Screenshots of each page go to .artifacts/screenshots/.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.test import override_settings

from .fixtures.browser import (
    ANDROID_CHROME,
    WINDOWS_CHROME,
    LiveDemo,
    click_and_wait,
    phone_overflow,
    screenshots,
    sign_in,
)

pytestmark = [pytest.mark.django_db(transaction=True, databases="__all__"), pytest.mark.slow]

PAGE = "/account/sessions/"


def test_one_browser_signs_the_other_out(
    live_demo: LiveDemo, browsers: Callable[..., Any]
) -> None:
    from selenium.webdriver.common.by import By

    laptop, phone = browsers(WINDOWS_CHROME), browsers(ANDROID_CHROME)
    laptop.get(live_demo.url("/login/"))
    screenshots(laptop, f"{live_demo.name}-login")
    sign_in(laptop, live_demo)
    sign_in(phone, live_demo)
    screenshots(phone, f"{live_demo.name}-home-signed-in")

    laptop.get(live_demo.url(PAGE))
    assert laptop.title == "Where you are signed in · django-azure-sessions demo"
    cards = laptop.find_elements(By.CSS_SELECTOR, ".das-session")
    assert len(cards) == 2
    this, other = cards  # this device first
    laptop_name, phone_name = "Chrome on Windows", "Chrome Mobile on Android"
    assert this.find_element(By.CSS_SELECTOR, ".das-device").text == f"{laptop_name}\nThis device"
    assert other.find_element(By.CSS_SELECTOR, ".das-device").text == phone_name
    assert "Signed in\njust now" in other.text
    assert "Last active\njust now" in other.text
    assert "Last active\nnow" in this.text
    assert not this.find_elements(By.CSS_SELECTOR, "button")  # this device: the header's
    assert phone_overflow(laptop) == 0
    screenshots(laptop, f"{live_demo.name}-sessions")

    click_and_wait(laptop, other.find_element(By.CSS_SELECTOR, "button"))
    message = laptop.find_element(By.CSS_SELECTOR, ".das-messages").text
    assert message == f"Signed out of {phone_name}."
    assert "?" not in laptop.current_url  # the message is not in the query string
    assert len(laptop.find_elements(By.CSS_SELECTOR, ".das-session")) == 1
    screenshots(laptop, f"{live_demo.name}-sessions-signed-out")

    phone.get(live_demo.url("/session/"))
    header = phone.find_element(By.TAG_NAME, "header").text
    assert "Signed in as" not in header
    assert "Sign in" in header
    assert "_auth_user_id" not in phone.find_element(By.TAG_NAME, "main").text
    phone.get(live_demo.url(PAGE))
    assert phone.current_url == live_demo.url(f"/login/?next={PAGE}")  # LOGIN_URL
    laptop.get(live_demo.url("/session/"))
    assert "Signed in as demo" in laptop.find_element(By.TAG_NAME, "header").text


@pytest.mark.parametrize("live_demo", ["sql_postgres"], indirect=True)
def test_the_packages_own_layout(
    live_demo: LiveDemo, browsers: Callable[..., Any], settings: Any
) -> None:
    """A site that names no BASE_TEMPLATE gets the package's layout: a way back, its user,
    a sign-out button, and a page that fits a phone."""
    from selenium.webdriver.common.by import By

    laptop, phone = browsers(WINDOWS_CHROME), browsers(ANDROID_CHROME)
    sign_in(laptop, live_demo)
    sign_in(phone, live_demo)
    package_layout = {
        **settings.AZURE_SESSIONS,
        "BASE_TEMPLATE": "django_azure_sessions/base.html",
    }
    with override_settings(AZURE_SESSIONS=package_layout):
        phone.get(live_demo.url(PAGE))
        assert phone.title == "Where you are signed in"
        header = phone.find_element(By.CSS_SELECTOR, ".das-header")
        assert header.find_element(By.LINK_TEXT, "← Back to the site").get_attribute("href") == (
            live_demo.url("/")
        )
        assert "Signed in as demo" in header.text
        assert phone_overflow(phone) == 0
        screenshots(phone, "package-layout-sessions")
        click_and_wait(phone, phone.find_element(By.CSS_SELECTOR, ".das-page .das-danger"))
        assert phone.find_element(By.CSS_SELECTOR, ".das-messages").text == (
            "Signed out of 1 other session."
        )
        screenshots(phone, "package-layout-signed-out")
        header = phone.find_element(By.CSS_SELECTOR, ".das-header")
        click_and_wait(phone, header.find_element(By.TAG_NAME, "button"))  # the layout's
        assert phone.current_url == live_demo.url("/")
        assert "Sign in" in phone.find_element(By.TAG_NAME, "header").text
    laptop.get(live_demo.url("/"))
    assert "Signed in as" not in laptop.find_element(By.TAG_NAME, "header").text
