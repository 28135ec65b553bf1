"""Packaging: pyproject declares ranges, constraints files pin points inside them, and CI runs the README's command.

constraints/ci.txt holds the exact versions CI installs; constraints/torch-2.11.txt the torch/torchvision pair a
GPU image in use ships, which raymeta must install beside (pip's resolver accepting it is shown in
docs/development.md; this checks the same against pyproject's specifiers, without the network).
"""

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def declared(extras: tuple[str, ...] = ()) -> dict[str, Requirement]:
    requirements = [Requirement(text) for text in PROJECT["dependencies"]]
    for extra in extras:
        requirements += [Requirement(text) for text in PROJECT["optional-dependencies"][extra]]
    merged: dict[str, Requirement] = {}
    for requirement in requirements:
        name = canonicalize_name(requirement.name)
        if name in merged:  # the same package in two places (optuna): both ranges must hold
            merged[name].specifier &= requirement.specifier
        else:
            merged[name] = requirement
    return merged


def pins(name: str) -> dict[str, Version]:
    found = {}
    for line in (ROOT / "constraints" / name).read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            match = re.fullmatch(r"([A-Za-z0-9._-]+)==([^\s;]+)", line)
            assert match, f"constraints/{name}: not an exact pin: {line!r}"
            found[canonicalize_name(match[1])] = Version(match[2])
    return found


def test_torch_and_torchvision_are_ranges_not_pins():
    requirements = declared()
    for name in ("torch", "torchvision", "ray"):
        specifier = requirements[name].specifier
        assert not any(spec.operator in ("==", "===") for spec in specifier), f"{name} pinned: {specifier}"


@pytest.mark.parametrize("constraints", ["ci.txt", "torch-2.11.txt"])
def test_the_pinned_versions_satisfy_the_declared_ranges(constraints):
    requirements, pinned = declared(("test", "optuna", "export", "tracking")), pins(constraints)
    for name, version in pinned.items():
        if name in requirements:
            assert requirements[name].specifier.contains(version, prereleases=True), (
                f"constraints/{constraints}: {name}=={version} is outside pyproject's {requirements[name]}"
            )
    if constraints == "ci.txt":  # the lock pins every declared package
        assert set(requirements) <= set(pinned), sorted(set(requirements) - set(pinned))


@pytest.mark.parametrize("constraints", ["ci.txt", "torch-2.11.txt"])
def test_torchvision_is_the_one_built_for_the_pinned_torch(constraints):
    # torchvision 0.(15 + k) is released with, and requires, torch 2.k (0.26 ↔ 2.11, 0.29 ↔ 2.14).
    pinned = pins(constraints)
    torch, torchvision = pinned["torch"], pinned["torchvision"]
    assert (torchvision.major, torchvision.minor) == (0, torch.minor + 15) and torch.major == 2


def test_the_readme_test_command_is_what_ci_runs():
    readme_blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.S)
    setup, tests = readme_blocks[0].strip(), readme_blocks[1].strip()
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci.replace("pip install -q ", "pip install ") == tests
    for command in (setup, tests, ci):
        assert "-c constraints/ci.txt" in command
    assert "ruff check ." in tests and tests.endswith('pytest -m ""')
