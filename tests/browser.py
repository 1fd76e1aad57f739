"""A real browser for end-to-end tests: Debian's Chromium, driven by Playwright.

Playwright's own browser builds are never downloaded: it drives the machine's
``/usr/bin/chromium``. Where that is missing, the test set-up installs Debian's
package with apt-get, once, under a lock; where it cannot (not root, no apt-get) the
browser tests are skipped with the reason. A machine that could install it and did
not (root with apt-get: CI here) fails them instead, so CI never passes by skipping.
"""

import contextlib
import fcntl
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.db import connections
from playwright.sync_api import Browser, Page, sync_playwright

# Playwright for Python downloads nothing unless told to (`playwright install`);
# this says so to anything that would look.
os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

CHROMIUM = Path("/usr/bin/chromium")
# The browser and the fonts pages are drawn with (of its recommended packages, the
# only one a headless browser needs: the rest is a desktop's).
PACKAGES = ["chromium", "fonts-liberation"]
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive"}
# Waits for another apt-get or dpkg run (another checkout's tests, a person's) to
# finish rather than fail at once on its lock.
APT_LOCK_WAIT = ["-o", "DPkg::Lock::Timeout=120"]
INSTALL_LOCK = Path(tempfile.gettempdir()) / "sagashop-chromium-install.lock"
# Each longer than apt's own wait for its lock (it gives up first, cleanly, rather
# than being killed halfway through an install), all within the module's timeout.
UPDATE_SECONDS, INSTALL_SECONDS = 240, 300
# Headless as root: no sandbox (it refuses root), no GPU; nothing that calls home, as
# the machine's closed network refuses those connections, many at a time. Playwright
# gives every launch a fresh profile (user data directory) of its own.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1280, "height": 900}


def chromium_executable() -> str:
    """Debian's Chromium, installed first if missing and this process may; skip the
    test where it may not, fail it where it may and the install failed."""
    if CHROMIUM.exists():
        return str(CHROMIUM)
    if os.geteuid() != 0:
        pytest.skip(
            f"browser tests: {CHROMIUM} is missing and only root may install it "
            "(apt-get install chromium)"
        )
    if shutil.which("apt-get") is None:
        pytest.skip(f"browser tests: {CHROMIUM} is missing and there is no apt-get")
    with _install_lock():
        if not CHROMIUM.exists():  # another session may have installed it meanwhile
            _apt_install_chromium()
    if not CHROMIUM.exists():
        pytest.fail(f"apt-get installed chromium, yet {CHROMIUM} is missing")
    return str(CHROMIUM)


def _apt_install_chromium() -> None:
    """apt-get install chromium; on a fresh machine its package lists are empty or
    old, so they are updated once and the install tried again."""
    install = ["apt-get", "install", "-y", "--no-install-recommends", *APT_LOCK_WAIT]
    install += PACKAGES
    first = _apt(install, INSTALL_SECONDS)
    if first.returncode == 0:
        return
    update = _apt(["apt-get", "update", *APT_LOCK_WAIT], UPDATE_SECONDS)
    second = _apt(install, INSTALL_SECONDS)
    if second.returncode != 0:
        pytest.fail(
            "browser tests: root with apt-get, yet `apt-get install chromium` failed "
            "(the tests must not be skipped here):\n"
            + "\n".join(
                run.stdout[-2000:] for run in (first, update, second) if run.stdout
            )
        )


def _apt(command: list[str], seconds: int) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            command,
            env={**os.environ, **APT_ENV},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            timeout=seconds,
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.output or ""
        if isinstance(output, bytes):
            output = output.decode(errors="replace")
        return subprocess.CompletedProcess(
            command, 1, f"{' '.join(command)}: timed out after {seconds}s\n{output}"
        )


@contextlib.contextmanager
def _install_lock(timeout: float = UPDATE_SECONDS + 2 * INSTALL_SECONDS) -> Iterator:
    """One install at a time on this machine: two test runs never race apt-get."""
    with open(INSTALL_LOCK, "a") as lock:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"waited {timeout:.0f}s for {INSTALL_LOCK}")
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def launched(executable: str) -> Iterator[Browser]:
    """Headless Chromium, with a fresh profile of its own; closed on the way out.

    While it runs, Playwright's event loop counts as running in this thread, and
    Django would refuse the test's database calls (SynchronousOnlyOperation). They
    are safe: the loop runs only inside a Playwright call, which the test waits for,
    so Django is told to allow them (DJANGO_ALLOW_ASYNC_UNSAFE, as Playwright's
    Django users do), for as long as the browser runs. Django keeps the connections
    made meanwhile apart from the thread's own (as an async context's); they are
    closed with the browser, or the test database could not be dropped.
    """
    allowed = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=executable,
                args=LAUNCH_ARGS,
                headless=True,
                timeout=60_000,
            )
            try:
                yield browser
            finally:
                browser.close()
                connections.close_all()  # while the loop runs: the browser's own
    finally:
        if allowed is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = allowed


def screenshot(page: Page, folder: Path, name: str) -> Path:
    """A full-page screenshot of ``page`` as ``folder/name.png``; print its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"screenshot: {path}")
    return path
