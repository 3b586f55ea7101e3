"""DICOM conformance checks with dciodvfy (Debian package dicom3tools).

Every DICOM object the tests write goes through :func:`dciodvfy_errors`; a test
asserts the list is empty. Warnings are allowed (they are returned by
:func:`dciodvfy_report` for whoever wants to look). dciodvfy missing is a test
failure, never a skip: ``scripts/bootstrap.sh`` installs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

MISSING = ("dciodvfy is not installed (Debian package dicom3tools); run scripts/bootstrap.sh "
           "(or apt-get install -y dicom3tools) before the tests")


def _dciodvfy() -> str:
    exe = shutil.which("dciodvfy")
    if exe is None:
        pytest.fail(MISSING, pytrace=False)
    return exe


def dciodvfy_report(path: str | os.PathLike) -> list[str]:
    """Every line dciodvfy prints for ``path`` (stdout and stderr)."""
    r = subprocess.run([_dciodvfy(), str(Path(path))], capture_output=True, text=True, timeout=120)
    return [ln.strip() for ln in (r.stdout + "\n" + r.stderr).splitlines() if ln.strip()]


def dciodvfy_errors(path: str | os.PathLike) -> list[str]:
    """The lines of dciodvfy's output for ``path`` that contain "Error" (empty list = conformant)."""
    return [ln for ln in dciodvfy_report(path) if "Error" in ln]


def dciodvfy_warnings(path: str | os.PathLike) -> list[str]:
    return [ln for ln in dciodvfy_report(path) if "Warning" in ln]
