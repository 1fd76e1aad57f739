"""The admin and Flower as an operator uses them: a real browser (Debian's Chromium,
driven by Playwright) against real processes.

The module starts its own gunicorn, worker (sending task events, for Flower), relay,
beat and Flower on the test database, and runs three purchases through the REST API:
one completed, one compensated (shipped to AQ, which the carrier refuses) and one
FAILED (shipped to AQ while every refund fails; the worker is then started again
without the fault, so an operator's Retry can end it). Then, in the browser: staff log
in, filter the saga list to what needs attention, read a compensated saga's timeline
and history, read the dashboard, retry the FAILED saga until it ends; Flower shows the
worker and the sagas' step tasks; a customer's login gets nowhere. Each test saves a
full-page screenshot of each page it opened under its own output folder
(``<tmp_path>/browser-screenshots/``), pass or fail, and prints the path.

The tests check what the pages show (and, for Flower, that beat's upkeep ran); they
run in file order, and the Retry test, which changes the FAILED saga, comes after
those that expect it FAILED.
"""

import contextlib
import re
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection
from playwright.sync_api import Browser, Page, expect
from playwright.sync_api import Error as PlaywrightError
from rest_framework.authtoken.models import Token

from sagas.models import SagaStatus
from shop.tests.factories import user_create
from tests import world
from tests.browser import VIEWPORT, chromium_executable, launched, screenshot
from tests.cluster import Cluster, free_port, wait_until
from tests.test_faults import restart_worker_without_faults

# Its own cluster, with faults and task events: run apart, as the other tests that
# start their own processes are. The first test also waits for Chromium's install
# (where it is missing: 13 minutes at the most) and for the purchases to end. The
# tests write nothing: their database mark (which has the test database made) wraps
# each in a transaction that is rolled back, and leaves the module's purchases,
# committed before, in place.
# Up to 30 minutes for the first test, whose set-up may wait out another install of
# Chromium and then make its own (each step bounded: tests/browser.py).
pytestmark = [pytest.mark.faults, pytest.mark.timeout(1800), pytest.mark.django_db]

PASSWORD = "browser-test-password-4711"
FLOWER_USER, FLOWER_PASSWORD = "flower", "flower-test-password-0815"
# Every refund fails, as if the payment service were away: the compensation of a
# payment gives up after its retries and the saga is FAILED.
FAULTS = "payments.refund:transient:1"
FLOWER_CREDENTIALS = {"username": FLOWER_USER, "password": FLOWER_PASSWORD}
# What beat sends (shop.settings' CELERY_BEAT_SCHEDULE).
UPKEEP = {
    "sagas.relay_outbox",
    "sagas.recover_sagas",
    "orders.reconcile",
    "sagas.clean_outbox",
    "sagas.clean_inboxes",
    "sagas.clean_barriers",
    "shop.clean_request_counts",
}
MS = 1000
expect.set_options(timeout=20 * MS)


@dataclass(frozen=True)
class Shop:
    """What the module's processes serve, and the sagas they ran."""

    web: str
    flower: str
    cluster: Cluster
    staff: str
    customer: str
    completed: int
    compensated: int
    failed: int
    worker: str  # the worker now running (the first one had the fault)


@pytest.fixture(scope="module")
def chromium() -> str:
    return chromium_executable()


@pytest.fixture(scope="module")
def shop(chromium, django_db_setup, django_db_blocker) -> Iterator[Shop]:
    with django_db_blocker.unblock():
        flower_port = free_port()
        cluster = Cluster(
            db_name=connection.settings_dict["NAME"],
            env={
                "SAGA_FAULTS": FAULTS,
                "CELERY_WORKER_SEND_TASK_EVENTS": "true",
                "FLOWER_BASIC_AUTH": f"{FLOWER_USER}:{FLOWER_PASSWORD}",
                # The saga pages link each step's task to this Flower.
                "FLOWER_URL": f"http://127.0.0.1:{flower_port}",
            },
        )
    try:
        # The admin's styles and scripts, served by the web process (WhiteNoise) from
        # STATIC_ROOT as under `make run`: collected before it starts.
        call_command("collectstatic", interactive=False, verbosity=0)
        cluster.start(beat=True)
        flower = cluster.start_flower(flower_port)
        web = cluster.start_web(free_port())
        with django_db_blocker.unblock():
            found = run_purchases(cluster, web, flower)
        yield found
    finally:
        cluster.stop()
        with django_db_blocker.unblock():
            # Transactional tests after this module expect an empty database.
            call_command("flush", interactive=False, verbosity=0)


def run_purchases(cluster: Cluster, web: str, flower: str) -> Shop:
    world.product("TEA", price="10.00", units=100)
    buyer = world.customer("1000.00")
    staff = user_create(username="ops", is_staff=True)  # an operator's permissions
    for user in (buyer.user, staff):
        user.set_password(PASSWORD)
        user.save()
    token = Token.objects.create(user=buyer.user).key

    def place(ship_to: str) -> int:
        return world.place_over_http(web, buyer, token, ship_to=ship_to)

    failed = place("AQ")
    [saga] = world.wait_ended([failed], timeout=120)
    assert saga.status == SagaStatus.FAILED, saga.error
    restart_worker_without_faults(cluster)
    completed, compensated = place("JP"), place("AQ")
    ended = {s.pk: s.status for s in world.wait_ended([completed, compensated])}
    assert ended == {
        completed: SagaStatus.COMPLETED,
        compensated: SagaStatus.COMPENSATED,
    }
    return Shop(
        web=web,
        flower=flower,
        cluster=cluster,
        staff=staff.username,
        customer=buyer.user.username,
        completed=completed,
        compensated=compensated,
        failed=failed,
        worker=f"worker{cluster.workers}@{socket.gethostname()}",
    )


@pytest.fixture(scope="module")
def browser(chromium, shop) -> Iterator[Browser]:
    """One Chromium for the module, started after the purchases and closed before
    the database is flushed: Django refuses database calls while it runs."""
    with launched(chromium) as running:
        yield running


@pytest.fixture
def open_page(browser, request, tmp_path) -> Iterator[Callable[..., Page]]:
    """Open a page in a browser context of its own (no cookies shared) at a base
    URL; each page's last state is saved as a screenshot, pass or fail."""
    opened: list[Page] = []

    def open_(base_url: str, **options) -> Page:
        context = browser.new_context(base_url=base_url, viewport=VIEWPORT, **options)
        context.set_default_timeout(30 * MS)
        opened.append(context.new_page())
        return opened[-1]

    yield open_
    for n, page in enumerate(opened):
        name = request.node.name + (f"-{n + 1}" if n else "")
        with contextlib.suppress(PlaywrightError):
            screenshot(page, shots(tmp_path), name)
        page.context.close()


def shots(tmp_path: Path) -> Path:
    return tmp_path / "browser-screenshots"


@pytest.fixture
def admin(shop, open_page) -> Page:
    """The admin, logged in as the operator through its login form."""
    page = open_page(shop.web)
    log_in(page, shop.staff)
    expect(page).to_have_url(f"{shop.web}/admin/")
    return page


def log_in(page: Page, username: str) -> None:
    page.goto("/admin/")
    expect(page).to_have_url(re.compile(r"/admin/login/"))
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(PASSWORD)
    page.locator("#login-form [type=submit]").click()


def saga_rows(page: Page):
    return page.locator("#result_list tbody tr")


def saga_row(page: Page, saga_id: int):
    return saga_rows(page).filter(
        has=page.locator(".field-id", has_text=re.compile(f"^{saga_id}$"))
    )


def saga_page(page: Page, saga_id: int) -> None:
    page.goto(f"/admin/sagas/saga/{saga_id}/change/")
    expect(page.locator("#saga-timeline svg.saga-timeline")).to_be_visible()


def status_of(page: Page):
    return page.locator(".field-status_badge .readonly")


def history(page: Page) -> list[tuple[str, str]]:
    """The saga page's history as (what happened, to which unit), in its order."""
    rows = page.locator("#saga-history tr.saga-entry").evaluate_all(
        "rows => rows.map(r => [r.dataset.happening, r.dataset.unit])"
    )
    return [tuple(row) for row in rows]


# THE ADMIN ---------------------------------------------------------------------------


def test_staff_log_in_and_find_the_failed_saga_needing_attention(shop, admin):
    expect(admin.locator("#saga-dashboard-index-link")).to_be_visible()
    admin.locator("tr.model-saga th a").click()
    expect(admin).to_have_url(f"{shop.web}/admin/sagas/saga/")
    expect(saga_rows(admin)).to_have_count(3)
    completed = saga_row(admin, shop.completed)
    expect(completed.locator("td.field-mode_code")).to_have_text("orchestration")
    expect(completed.locator("td.field-duration")).to_have_text(
        re.compile(r"^[0-9.]+ m?s$")
    )

    admin.locator("#changelist-filter").get_by_role(
        "link", name="Needs attention"
    ).click()

    expect(admin).to_have_url(re.compile(r"[?&]attention=needed"))
    expect(saga_rows(admin)).to_have_count(1)
    [row] = saga_rows(admin).all()
    expect(row.locator(".field-id")).to_have_text(str(shop.failed))
    expect(row.locator(".field-status_at_step")).to_contain_text("FAILED")
    expect(row.locator("td.field-mode_code")).to_have_text("orchestration")
    expect(row.locator("td.field-duration")).to_have_text("-")  # not ended
    expect(row.locator(".field-short_error")).not_to_be_empty()


def test_a_compensated_sagas_page_draws_its_way_back(shop, admin):
    saga_page(admin, shop.compensated)

    expect(status_of(admin)).to_have_text("COMPENSATED")
    timeline = admin.locator("#saga-timeline svg.saga-timeline")
    # Three of the four steps ran, the shipment was refused, the two before it were
    # undone (newest first), then the order was cancelled.
    expect(timeline.locator("g.lane.action")).to_have_count(4)
    expect(timeline.locator("g.lane.action rect.span.done")).to_have_count(2)
    expect(timeline.locator("g.lane.action rect.span.failed")).to_have_count(1)
    compensations = timeline.locator("g.lane.compensation")
    expect(compensations).to_have_count(2)
    expect(compensations.locator("rect.span.undone")).to_have_count(2)
    expect(timeline.locator("g.lane.end")).to_have_attribute(
        "data-unit", "cancel_order"
    )
    expect(timeline.locator("g.turn.undo")).to_have_count(1)
    expect(timeline.locator("g.turn.compensated")).to_have_count(1)
    expect(admin.locator("#saga-step-2")).to_have_class(re.compile("status-failed"))
    for index in (0, 1):
        expect(admin.locator(f"#saga-step-{index}")).to_have_class(
            re.compile("status-compensated")
        )
    undone = compensations.evaluate_all("lanes => lanes.map(l => l.dataset.unit)")

    entries = history(admin)
    what = [happening for happening, _ in entries]
    refused = entries.index(("failed", "create_shipment"))
    began = what.index("undoing began")
    compensated = [i for i, (h, _) in enumerate(entries) if h == "compensated"]
    assert refused < began < compensated[0] < compensated[1] < len(entries) - 1
    assert [entries[i][1] for i in compensated] == undone
    assert entries[-1][0] == "ended"
    expect(admin.locator("#saga-history tr.saga-entry").last).to_contain_text(
        "COMPENSATED"
    )


def test_the_dashboard_counts_the_sagas_and_opens_the_list_they_count(
    shop, admin, tmp_path
):
    admin.locator("#saga-dashboard-index-link").click()
    expect(admin.locator("#dashboard")).to_be_visible()

    def figure(key: str):
        return admin.locator(f'#dashboard a.figure[data-figure="{key}"]')

    expect(figure("attention-needed")).to_have_text("1")
    expect(figure("at-work-FAILED-orchestration")).to_have_text("1")
    for window in ("1h", "24h"):
        expect(figure(f"ended-{window}-orchestration-completed")).to_have_text("1")
        expect(figure(f"ended-{window}-orchestration-compensated")).to_have_text("1")
        expect(figure(f"ended-{window}-all-rate")).to_have_text("50.0%")
    expect(admin.locator("tr.attention-saga")).to_have_attribute(
        "data-saga", str(shop.failed)
    )
    screenshot(admin, shots(tmp_path), "dashboard")

    figure("ended-1h-all-compensated").click()

    expect(admin).to_have_url(re.compile(r"/admin/sagas/saga/\?.*status__exact"))
    expect(saga_rows(admin)).to_have_count(1)
    expect(saga_rows(admin).locator(".field-id")).to_have_text(str(shop.compensated))


def test_retry_ends_a_failed_saga(shop, admin, tmp_path):
    saga_page(admin, shop.failed)
    expect(status_of(admin)).to_have_text("FAILED")
    expect(admin.locator("#saga-timeline g.turn.failed")).to_have_count(1)
    assert history(admin)[-1][0] == "saga FAILED"
    screenshot(admin, shots(tmp_path), "failed-saga")

    admin.once("dialog", lambda dialog: dialog.accept())  # "Retry this saga?"
    admin.get_by_role("button", name="Retry").click()

    expect(admin.locator("ul.messagelist")).to_contain_text("1 saga retried.")
    wait_until(
        lambda: reload_shows(admin, "COMPENSATED"),
        timeout=90,
        interval=1,
        what="the retried saga to be COMPENSATED",
    )
    expect(
        admin.locator("#saga-timeline g.mark.event[data-kind=OPERATOR_RETRY]")
    ).to_have_count(1)
    expect(admin.locator("#saga-timeline g.turn.compensated")).to_have_count(1)
    retried = admin.locator(
        '#saga-history tr.saga-entry[data-kind="OPERATOR_RETRY"] td.actor'
    )
    expect(retried).to_have_text(shop.staff)
    assert history(admin)[-1][0] == "ended"
    expect(admin.get_by_role("button", name="Retry")).to_have_count(0)


def reload_shows(page: Page, status: str) -> bool:
    page.reload()
    return status_of(page).inner_text().strip() == status


# FLOWER ------------------------------------------------------------------------------


def test_flower_shows_the_worker_and_the_saga_step_tasks(
    shop, browser, open_page, tmp_path
):
    page = open_page(shop.web, http_credentials=FLOWER_CREDENTIALS)
    log_in(page, shop.staff)
    saga_page(page, shop.completed)
    link = page.locator("#saga-step-0 a.flower-task")
    expect(link).to_have_attribute("href", re.compile(f"^{shop.flower}/task/"))

    with page.context.expect_page() as opened:
        link.click()  # a new tab, in Flower

    task = opened.value
    expect(task.locator(".task-name-value")).to_have_text("purchase.charge_payment")
    kwargs = task.locator(".task-data-row", has_text="Keyword arguments")
    expect(kwargs.locator("pre")).to_contain_text(f"'saga_id': {shop.completed}")
    screenshot(task, shots(tmp_path), "flower-task")
    task.close()

    page.goto(f"{shop.flower}/workers")
    worker = page.locator("#workers-table tbody tr", has_text=shop.worker)
    expect(worker).to_contain_text("Online")
    screenshot(page, shots(tmp_path), "flower-workers")

    # Beat's upkeep has run meanwhile (every 5 s); it sends no events, so it
    # does not show among the tasks.
    wait_until(
        lambda: shop.cluster.received("sagas.recover_sagas") >= 2,
        timeout=30,
        what="beat's sweeps to run",
    )
    page.goto(f"{shop.flower}/tasks")
    page.locator("#tasks-table_length select").select_option("100")
    info = page.locator("#tasks-table_info")
    expect(info).to_have_text(re.compile(r"^Showing 1 to (\d+) of \1 tasks$"))
    names = page.locator("#tasks-table tbody tr td:first-child").all_inner_texts()
    assert {"purchase.charge_payment", "purchase.refund_payment"} <= set(names)
    assert not set(names) & UPKEEP, names

    # Without its credentials: a 401 that asks for them, and no page (a headless
    # browser has no prompt to show; nothing to screenshot).
    anonymous = browser.new_context()
    try:
        answer = anonymous.request.get(f"{shop.flower}/workers")
        assert answer.status == 401
        assert answer.headers["www-authenticate"].startswith("Basic")
        with pytest.raises(PlaywrightError, match="ERR_INVALID_AUTH_CREDENTIALS"):
            anonymous.new_page().goto(f"{shop.flower}/workers")
    finally:
        anonymous.close()


def test_a_customer_cannot_reach_the_admin(shop, open_page, tmp_path):
    page = open_page(shop.web)
    log_in(page, shop.customer)

    expect(page).to_have_url(re.compile(r"/admin/login/"))
    expect(page.locator(".errornote")).to_contain_text(
        "Please enter the correct username and password for a staff account."
    )
    screenshot(page, shots(tmp_path), "customer-refused")

    page.goto(f"/admin/sagas/saga/{shop.completed}/change/")

    expect(page).to_have_url(re.compile(r"/admin/login/\?next="))
    expect(page.locator("#login-form")).to_be_visible()
    expect(page.locator("#saga-timeline")).to_have_count(0)
