"""Where the browser tests find Chromium: installed with apt-get when missing and
allowed, skipped where not allowed, failed (never skipped) where allowed and the
install did not work. apt-get itself is replaced here: nothing is installed."""

import subprocess
from pathlib import Path

import pytest

from tests import browser


@pytest.fixture
def missing(tmp_path, monkeypatch) -> Path:
    """No Chromium at its path; root, with apt-get; every apt-get call recorded."""
    path = tmp_path / "chromium"
    monkeypatch.setattr(browser, "CHROMIUM", path)
    monkeypatch.setattr(browser, "INSTALL_LOCK", tmp_path / "install.lock")
    monkeypatch.setattr(browser.os, "geteuid", lambda: 0)
    monkeypatch.setattr(browser.shutil, "which", lambda name: f"/usr/bin/{name}")
    return path


def apt(monkeypatch, *, installs: Path | None, fails: set[str] = frozenset()):
    """apt-get as a fake: each subcommand in ``fails`` exits 100; an install that
    succeeds creates ``installs``. Returns the subcommands run, in order."""
    calls: list[str] = []

    def run(command, seconds):
        subcommand = command[1]
        calls.append(subcommand)
        if subcommand in fails:
            return subprocess.CompletedProcess(command, 100, f"E: {subcommand} broke")
        if subcommand == "install" and installs is not None:
            installs.touch()
        return subprocess.CompletedProcess(command, 0, "")

    monkeypatch.setattr(browser, "_apt", run)
    return calls


def test_chromium_present_is_used_as_it_is(missing, monkeypatch):
    missing.touch()
    calls = apt(monkeypatch, installs=missing)

    assert browser.chromium_executable() == str(missing)
    assert calls == []


def test_chromium_missing_is_installed_by_root(missing, monkeypatch):
    calls = apt(monkeypatch, installs=missing)

    assert browser.chromium_executable() == str(missing)
    assert calls == ["install"]


def test_stale_package_lists_are_updated_and_the_install_tried_again(
    missing, monkeypatch
):
    attempts = iter([100, 0])
    calls: list[str] = []

    def run(command, seconds):
        calls.append(command[1])
        code = next(attempts) if command[1] == "install" else 0
        if code == 0 and command[1] == "install":
            missing.touch()
        return subprocess.CompletedProcess(command, code, "")

    monkeypatch.setattr(browser, "_apt", run)

    assert browser.chromium_executable() == str(missing)
    assert calls == ["install", "update", "install"]


def test_a_failed_install_as_root_fails_the_tests_rather_than_skip_them(
    missing, monkeypatch
):
    apt(monkeypatch, installs=None, fails={"install"})

    with pytest.raises(pytest.fail.Exception, match="must not be skipped here"):
        browser.chromium_executable()


def test_without_root_the_browser_tests_are_skipped_with_the_reason(
    missing, monkeypatch
):
    calls = apt(monkeypatch, installs=missing)
    monkeypatch.setattr(browser.os, "geteuid", lambda: 1000)

    with pytest.raises(pytest.skip.Exception, match="only root may install it"):
        browser.chromium_executable()
    assert calls == []


def test_without_apt_get_the_browser_tests_are_skipped_with_the_reason(
    missing, monkeypatch
):
    calls = apt(monkeypatch, installs=missing)
    monkeypatch.setattr(browser.shutil, "which", lambda name: None)

    with pytest.raises(pytest.skip.Exception, match="there is no apt-get"):
        browser.chromium_executable()
    assert calls == []


def test_an_install_that_takes_too_long_is_stopped_and_reported(tmp_path):
    done = browser._apt(["sleep", "5"], seconds=0.2)

    assert done.returncode != 0
    assert "timed out after" in done.stdout
