"""The CI configurations agree: tox.ini's envs, the workflow's matrix, and pyproject.toml.

The workflow (.github/workflows/tests.yml) cannot run here, so nothing else would notice an
env added to tox.ini and not to the workflow, or a supported version that no env tests.
"""

from __future__ import annotations

import configparser
import itertools
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / ".github" / "workflows" / "tests.yml"


def expand(pattern: str) -> list[str]:
    """tox's brace factors: ``py31{0,1}-django{42,52}`` is four envs."""
    parts = re.split(r"\{([^{}]*)\}", pattern)
    choices = [[part] if i % 2 == 0 else part.split(",") for i, part in enumerate(parts)]
    return ["".join(chosen).strip() for chosen in itertools.product(*choices)]


def tox_config() -> configparser.ConfigParser:
    config = configparser.ConfigParser(interpolation=None)
    config.read(ROOT / "tox.ini", encoding="utf-8")
    return config


def tox_envs() -> list[str]:
    lines = tox_config()["tox"]["env_list"].splitlines()
    return [env for line in lines if line.strip() for env in expand(line.strip())]


def tox_labels() -> dict[str, list[str]]:
    labels: dict[str, list[str]] = {}
    for line in tox_config()["tox"].get("labels", "").splitlines():
        if line.strip():
            name, _, envs = line.partition("=")
            labels[name.strip()] = [
                env for part in envs.split(",") if part.strip() for env in expand(part.strip())
            ]
    return labels


def workflow_matrix() -> list[dict[str, Any]]:
    workflow = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))
    include: list[dict[str, Any]] = workflow["jobs"]["tests"]["strategy"]["matrix"]["include"]
    return include


def pyproject() -> dict[str, Any]:
    with (ROOT / "pyproject.toml").open("rb") as file:
        return tomllib.load(file)


def factor(env: str, prefix: str) -> str | None:
    """The digits of ``env``'s factor that starts with ``prefix`` (``py``, ``django``...)."""
    for part in env.split("-"):
        if re.fullmatch(rf"{prefix}\d+", part):
            return part.removeprefix(prefix)
    return None


def dotted(digits: str) -> str:
    """``310`` is Python 3.10, ``42`` Django 4.2, ``64`` redis-py 6.4."""
    return f"{digits[0]}.{digits[1:]}"


def minimum(requirements: list[str], name: str) -> str:
    """The lowest version ``name>=X.Y`` allows, among ``requirements``."""
    for requirement in requirements:
        match = re.fullmatch(rf"{name}(\[[^\]]*\])?>=(\d+\.\d+)", requirement, flags=re.I)
        if match:
            return match.group(2)
    raise AssertionError(f"no {name}>=X.Y among {requirements}")


def test_expand_brace_factors() -> None:
    assert expand("py312-django{42,52,60}") == [
        "py312-django42",
        "py312-django52",
        "py312-django60",
    ]
    assert expand("py31{0,1}-django{42,52}") == [
        "py310-django42",
        "py310-django52",
        "py311-django42",
        "py311-django52",
    ]
    assert expand("py310-django42-redis64") == ["py310-django42-redis64"]


def test_workflow_runs_every_tox_env() -> None:
    envs = tox_envs()
    matrix = [entry["env"] for entry in workflow_matrix()]
    assert len(set(envs)) == len(envs), "tox.ini lists an env twice"
    assert len(set(matrix)) == len(matrix), "the workflow lists an env twice"
    assert sorted(matrix) == sorted(envs), (
        f"only in tox.ini: {sorted(set(envs) - set(matrix))}; "
        f"only in {WORKFLOW.relative_to(ROOT)}: {sorted(set(matrix) - set(envs))}"
    )


def test_workflow_runs_each_env_on_its_python() -> None:
    for entry in workflow_matrix():
        py = factor(entry["env"], "py")
        assert py is not None, f"{entry['env']} has no py3NN factor"
        assert str(entry["python"]) == dotted(py), entry


def test_workflow_has_the_services_and_tools_the_suite_needs() -> None:
    job = yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))["jobs"]["tests"]
    assert set(job["services"]) == {"postgres", "mariadb", "redis"}
    script = "\n".join(step.get("run", "") for step in job["steps"])
    assert "npm ci" in script
    for package in ("libmariadb-dev", "chromium", "chromium-driver", "redis-server"):
        assert re.search(rf"\s{re.escape(package)}(\s|$)", script), package
    assert 'tox run -e "${{ matrix.env }}"' in script


def test_classifiers_name_the_versions_tox_tests() -> None:
    classifiers = pyproject()["project"]["classifiers"]
    envs = tox_envs()
    djangos = {dotted(d) for env in envs if (d := factor(env, "django"))}
    pythons = {dotted(p) for env in envs if (p := factor(env, "py"))}
    classified_djangos = {
        c.removeprefix("Framework :: Django :: ")
        for c in classifiers
        if c.startswith("Framework :: Django :: ")
    }
    classified_pythons = {
        c.removeprefix("Programming Language :: Python :: ")
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    }
    assert classified_djangos == djangos
    assert classified_pythons == pythons


def test_oldest_env_is_the_oldest_supported() -> None:
    """``scripts/test --oldest`` (CI) runs the label ``oldest``: the lowest Python, Django and
    redis-py that pyproject.toml accepts."""
    (oldest,) = tox_labels()["oldest"]
    assert oldest in tox_envs()
    project = pyproject()["project"]
    python = re.fullmatch(r">=(\d+\.\d+)", project["requires-python"])
    assert python is not None, project["requires-python"]
    lowest = {
        "py": python.group(1),
        "django": minimum(project["dependencies"], "Django"),
        "redis": minimum(project["optional-dependencies"]["redis"], "redis"),
    }
    factors = {name: factor(oldest, name) for name in lowest}
    assert factors == {name: version.replace(".", "") for name, version in lowest.items()}
    pinned = (ROOT / "requirements" / f"redis{factors['redis']}.txt").read_text(encoding="utf-8")
    assert re.search(rf"^redis=={re.escape(lowest['redis'])}\.\d+$", pinned, flags=re.MULTILINE)


def test_ci_runs_the_readme_command_then_the_oldest_env() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r"^\s*run scripts/test\s*$", script, flags=re.MULTILINE), script
    assert re.search(r"^\s*run scripts/test --oldest\s*$", script, flags=re.MULTILINE), script


@pytest.mark.parametrize("name", ["build", "twine", "pyyaml", "trove-classifiers", "tomli"])
def test_tools_of_these_checks_are_in_the_test_group(name: str) -> None:
    group = pyproject()["dependency-groups"]["test"]
    assert any(re.match(rf"{name}\b", requirement, flags=re.I) for requirement in group)
