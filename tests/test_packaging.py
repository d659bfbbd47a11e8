"""The distributions a user installs: built, checked, and installed into a venv of their own.

``python -m build`` makes the sdist and the wheel from a copy of the checkout's files (those
git tracks or would track: no stale ``*.egg-info``, ``build/`` or ``.venv``), ``twine check``
reads them as the package index would, and their contents are compared with the checkout.
Then the wheel, with the ``redis`` and ``table`` extras, goes into a fresh venv (no system
or checkout packages), and a minimal project outside the checkout runs ``django-admin
check`` on each engine against it, then, on SQL and Redis, migrates, loads the package's
templates and saves a session: what the package needs at run time must be in the wheel.

The dependencies come from the package index (pip's cache makes it quick); Django is pinned
to the version this suite runs on, so a tox env checks the wheel on its own Django.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from collections.abc import Sequence
from email.parser import HeaderParser
from pathlib import Path

import django
import pytest
from django.conf import settings

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "django_azure_sessions"
NOT_SHIPPED = ("tests", "testproject", "benchmarks", "docs", "scripts", "node_modules")
ENGINES = ("sql", "redis", "table")


def source_version() -> str:
    """``__version__`` as the source states it (what setuptools reads, without importing)."""
    tree = ast.parse((ROOT / PACKAGE / "__init__.py").read_text(encoding="utf-8"))
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and [getattr(target, "id", None) for target in node.targets] == ["__version__"]
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        ):
            return node.value.value
    raise AssertionError(f"{PACKAGE}/__init__.py assigns no literal __version__")


def run(
    command: Sequence[str | Path],
    *,
    timeout: float = 300,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> str:
    """Run ``command``; its output, or a failure that shows the output."""
    result = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        cwd=cwd,
        env=env,
    )
    if result.returncode != 0:
        pytest.fail(
            f"`{' '.join(map(str, command))}` exited {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}",
            pytrace=False,
        )
    return result.stdout


def require_build_tools() -> None:
    missing = [name for name in ("build", "twine") if importlib.util.find_spec(name) is None]
    if missing:
        pytest.fail(
            f"{' and '.join(missing)} not installed in {sys.prefix}: they are in the `test` "
            "dependency group of pyproject.toml (`pip install --group pyproject.toml:test`, "
            "or scripts/test, which installs it)",
            pytrace=False,
        )


def checkout_files() -> list[str]:
    """The checkout's files as git sees them: tracked, or new and not ignored."""
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.fail(f"{ROOT} is not a git checkout: the build copies the files git lists")
    listing = run(
        ["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"]
    )
    return sorted({name for name in listing.split("\0") if (ROOT / name).is_file()})


@pytest.fixture(scope="module")
def dists(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The sdist and the wheel, built from a clean copy of the checkout."""
    require_build_tools()
    tmp = tmp_path_factory.mktemp("dists")
    source = tmp / "source"
    for name in checkout_files():
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, source / name, follow_symlinks=False)
    out = tmp / "dist"
    run([sys.executable, "-m", "build", "--outdir", out, source], timeout=600)
    (sdist,) = out.glob("*.tar.gz")
    (wheel,) = out.glob("*.whl")
    return sdist, wheel


def test_twine_check_passes(dists: tuple[Path, Path]) -> None:
    run([sys.executable, "-m", "twine", "check", "--strict", *dists])


def test_wheel_holds_the_package_and_its_licence_only(dists: tuple[Path, Path]) -> None:
    _, wheel = dists
    version = source_version()
    dist_info = f"{PACKAGE}-{version}.dist-info/"
    assert wheel.name == f"{PACKAGE}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    package_files = {name for name in names if name.startswith(f"{PACKAGE}/")}
    expected = {name for name in checkout_files() if name.startswith(f"{PACKAGE}/")}
    assert package_files == expected, (
        f"missing from the wheel: {sorted(expected - package_files)}; "
        f"not in the checkout: {sorted(package_files - expected)}"
    )
    for needed in (
        f"{PACKAGE}/py.typed",
        f"{PACKAGE}/migrations/0001_initial.py",
        f"{PACKAGE}/templates/{PACKAGE}/sessions.html",
        f"{PACKAGE}/templates/admin/{PACKAGE}/session_list.html",
        f"{dist_info}licenses/LICENSE",
    ):
        assert needed in names
    assert not {name for name in names if name.split("/")[0] in NOT_SHIPPED}
    assert names - package_files <= {
        f"{dist_info}{name}"
        for name in ("METADATA", "WHEEL", "RECORD", "top_level.txt", "licenses/LICENSE")
    }


def test_wheel_metadata(dists: tuple[Path, Path]) -> None:
    from trove_classifiers import classifiers as known_classifiers

    _, wheel = dists
    with zipfile.ZipFile(wheel) as archive:
        metadata = HeaderParser().parsestr(
            archive.read(f"{PACKAGE}-{source_version()}.dist-info/METADATA").decode()
        )
    assert metadata["Name"] == "django-azure-sessions"
    assert metadata["Version"] == source_version()
    assert metadata["License-Expression"] == "MIT"
    assert metadata.get_all("License-File") == ["LICENSE"]
    assert metadata["Description-Content-Type"] == "text/markdown"
    # The package index rejects an upload with a classifier it does not know.
    unknown = set(metadata.get_all("Classifier") or []) - known_classifiers
    assert not unknown, f"not trove classifiers: {sorted(unknown)}"


def test_sdist_holds_what_builds_the_wheel(dists: tuple[Path, Path]) -> None:
    sdist, _ = dists
    top = f"{PACKAGE}-{source_version()}"
    with tarfile.open(sdist) as archive:
        names = {name.removeprefix(f"{top}/") for name in archive.getnames()}
    for needed in ("LICENSE", "CHANGELOG.md", "README.md", "pyproject.toml", "PKG-INFO"):
        assert needed in names
    assert f"{PACKAGE}/templates/{PACKAGE}/sessions.html" in names
    assert not {name for name in names if name.split("/")[0] in NOT_SHIPPED}


def test_changelog_names_the_version() -> None:
    changelog = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    versions = re.findall(r"^## (\d+\.\d+\.\d+\S*)", changelog, flags=re.MULTILINE)
    assert versions, "CHANGELOG.md has no section '## X.Y.Z'"
    assert versions[0] == source_version(), (
        f"CHANGELOG.md's newest section is {versions[0]}, the package is {source_version()}"
    )


# The minimal project: what the README asks a user to write, with one engine.
SETTINGS = """\
from pathlib import Path

SECRET_KEY = "packaging-test-not-a-secret"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
INSTALLED_APPS = [
    "django_azure_sessions",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.messages",
    "django.contrib.sessions",
]
MIDDLEWARE = [
    "django_azure_sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {{
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {{
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        }},
    }}
]
ROOT_URLCONF = "urls"
DATABASES = {{
    "default": {{
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": Path(__file__).with_name("db.sqlite3"),
    }}
}}
SESSION_ENGINE = "django_azure_sessions.backends.{engine}"
AZURE_SESSIONS = {azure_sessions!r}
"""

URLS = """\
from django.contrib import admin
from django.urls import include, path

urlpatterns = [
    path("admin/", admin.site.urls),
    path("account/sessions/", include("django_azure_sessions.urls")),
]
"""

# A session saved and read back through the engine, as installed, and the templates found.
ROUND_TRIP = """\
from importlib import import_module

from django.conf import settings
from django.template.loader import get_template

get_template("django_azure_sessions/sessions.html")
get_template("admin/django_azure_sessions/session_list.html")

SessionStore = import_module(settings.SESSION_ENGINE).SessionStore
session = SessionStore()
session["cart"] = {"coffee": 2}
session.save()
assert SessionStore(session.session_key)["cart"] == {"coffee": 2}
session.delete()
print("round trip ok")
"""


def azure_sessions(engine: str) -> dict[str, object]:
    prefix = f"das-packaging-{os.getpid()}:"
    if engine == "sql":
        return {"SQL": {"DATABASE": "default"}}
    if engine == "redis":
        return {"KEY_PREFIX": prefix, "REDIS": {"URL": settings.REDIS_URL}}
    # Azurite's connection string: the check parses it, nothing connects.
    return {"TABLE": {"CONNECTION_STRING": "UseDevelopmentStorage=true"}}


@pytest.fixture(scope="module")
def venv(dists: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel and its ``redis`` and ``table`` extras installed."""
    _, wheel = dists
    path = tmp_path_factory.mktemp("venv") / "venv"
    run([sys.executable, "-m", "venv", path])
    run(
        [
            path / "bin" / "python",
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"{PACKAGE}[redis,table] @ {wheel.as_uri()}",
            f"Django=={django.__version__}",
        ],
        timeout=600,
    )
    return path


@pytest.mark.parametrize("engine", ENGINES)
def test_wheel_in_a_fresh_venv_passes_checks(engine: str, venv: Path, tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    assert ROOT not in project.parents
    (project / "settings.py").write_text(
        SETTINGS.format(engine=engine, azure_sessions=azure_sessions(engine)), encoding="utf-8"
    )
    (project / "urls.py").write_text(URLS, encoding="utf-8")
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP"}
    }
    env |= {"DJANGO_SETTINGS_MODULE": "settings", "PYTHONPATH": str(project)}
    python, django_admin = venv / "bin" / "python", venv / "bin" / "django-admin"

    imported = run(
        [python, "-c", f"import {PACKAGE}; print({PACKAGE}.__file__)"], cwd=project, env=env
    )
    location = Path(imported.strip()).resolve()
    assert location.is_relative_to(venv.resolve()), f"{PACKAGE} imported from {location}"

    run([django_admin, "check", "--fail-level", "WARNING"], cwd=project, env=env)
    if engine == "table":
        return
    if engine == "sql":
        run([django_admin, "migrate", "--verbosity", "0"], cwd=project, env=env)
    output = run([django_admin, "shell", "--command", ROUND_TRIP], cwd=project, env=env)
    assert "round trip ok" in output
