"""The pgwarden page in a real ``airflow standalone`` (the demo stack) and a real browser.

One stack for the module: the demo's PostgreSQL, moto S3 and Airflow, with a viewer user besides the admin.
A real ``appdb.backup_full`` run fills the repository; the page's figures are then checked against
``pgwarden catalog appdb --json`` (the repository read by the CLI). Auth: an anonymous request gets no data,
a viewer reads it. Per-DAG restriction is not in the simple auth manager (roles and teams only), so
that case is tested in-process in tests/dags/test_pgwarden_page_access.py.

The browser is Debian's chromium (``PGWARDEN_CHROMIUM``, default /usr/bin/chromium) driven by Playwright;
screenshots land in tests/artifacts/ (ignored by git).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_demo import demo

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = Path(os.environ.get("PGWARDEN_CHROMIUM", "/usr/bin/chromium"))
VIEWER = ("bob", "viewer", "bob-viewer-pw")
BACKUP = "appdb.backup_full"

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class Stack:
    def __init__(self, stack, base: Path) -> None:
        self.stack, self.base = stack, base
        self.url = stack.api_url

    def get(self, path: str, token: str | None = None, redirects: bool = True) -> tuple[int, dict, bytes]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        opener = urllib.request.build_opener(*(() if redirects else (_NoRedirect(),)))
        try:
            with opener.open(urllib.request.Request(self.url + path, headers=headers), timeout=60) as resp:
                return resp.status, dict(resp.headers), resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, dict(exc.headers), exc.read()

    def token(self, user: str, password: str) -> str:
        return demo.AirflowApi(self.url, username=user, password=password).token()

    def catalog(self) -> dict:
        pgwarden = Path(sys.executable).with_name("pgwarden")
        run = subprocess.run(["bash", "-c", f"{self.stack.source_line} && {pgwarden} catalog {demo.DATABASE} --json"],
                             cwd=self.base, capture_output=True, text=True, timeout=120)
        assert run.returncode == 0, run.stderr
        return json.loads(run.stdout)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture(scope="module")
def page_stack() -> Iterator[Stack]:
    from pgwarden.engine.cluster import free_port

    base = Path(tempfile.mkdtemp(prefix="pgwarden-page-e2e-"))
    os.chmod(base, 0o755)
    config = demo.DemoConfig(base=base, users=1000, sessions_per_user=3, api_port=free_port(),
                             more_users={VIEWER[0]: (VIEWER[1], VIEWER[2])})
    stack = demo.DemoStack(config, progress=print)
    try:
        stack.start()
        api = stack.api
        run = api.trigger(BACKUP)
        final = api.wait_for_run(BACKUP, run["dag_run_id"], timeout=300)
        assert final["state"] == "success", f"{BACKUP} ended {final['state']}\n{stack.log_tail()}"
        yield Stack(stack, base)
    finally:
        stack.stop()
        shutil.rmtree(base, ignore_errors=True)


def test_anonymous_requests_get_no_data(page_stack: Stack) -> None:
    status, _, body = page_stack.get("/pgwarden/api/status")
    assert status == 401 and b"appdb" not in body
    status, headers, body = page_stack.get("/pgwarden/", redirects=False)
    assert status == 302 and "login" in headers["location"] and b"appdb" not in body
    status, _, body = page_stack.get("/pgwarden/api/status", token="not-a-token")
    assert status in (401, 403) and b"appdb" not in body


def test_a_viewer_reads_the_status_and_it_matches_the_repository(page_stack: Stack) -> None:
    token = page_stack.token(VIEWER[0], VIEWER[2])
    status, _, body = page_stack.get("/pgwarden/api/status", token=token)
    assert status == 200, body[:500]
    databases = {d["database"]: d for d in json.loads(body)["databases"]}
    assert set(databases) == {demo.DATABASE}
    appdb = databases[demo.DATABASE]
    newest = [b for b in page_stack.catalog()["backups"] if b["valid"]][-1]
    full = appdb["backups"]["last_full"]
    assert (full["backup_id"], full["stored_bytes"]) == (newest["id"], newest["stored_bytes"])
    assert appdb["backups"]["kept"]["by_class"].get("daily") == 1
    assert appdb["erasure"]["erased"] == 0 and appdb["migrations"] is not None
    # The page itself, with the same figures, for the viewer's token.
    status, headers, html = page_stack.get("/pgwarden/", token=token)
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert newest["id"].encode() in html and b"<script" not in html


def test_the_page_in_a_browser(page_stack: Stack) -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"no chromium at {CHROMIUM}: .ci/run installs it with apt (or set PGWARDEN_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    newest = [b for b in page_stack.catalog()["backups"] if b["valid"]][-1]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            # Not signed in: the page sends the browser to Airflow's login, which comes back to it.
            page.goto(page_stack.url + "/pgwarden/")
            page.wait_for_selector('input[name="username"]', timeout=60_000)
            page.fill('input[name="username"]', demo.ADMIN_USER)
            page.fill('input[name="password"]', demo.ADMIN_PASSWORD)
            page.click('button[type="submit"]')
            page.wait_for_selector('[data-database="appdb"]', timeout=60_000)
            section = page.locator('[data-database="appdb"]')
            assert section.locator('[data-field="last-full-id"]').inner_text().strip() == newest["id"]
            size = section.locator('[data-field="last-full-size"]')
            assert int(size.get_attribute("data-bytes")) == newest["stored_bytes"]
            assert "no WAL in the repository" in section.locator('[data-field="rpo"]').inner_text()
            page.screenshot(path=str(ARTIFACTS / "pgwarden-page.png"), full_page=True)
            # The navigation entry: Airflow's own UI shows the page in its frame at /plugin/pgwarden.
            page.goto(page_stack.url + "/plugin/pgwarden")
            frame = page.frame_locator("iframe")
            frame.locator('[data-database="appdb"]').wait_for(timeout=60_000)
            page.screenshot(path=str(ARTIFACTS / "pgwarden-page-in-airflow.png"), full_page=True)
        finally:
            browser.close()
    assert (ARTIFACTS / "pgwarden-page.png").stat().st_size > 10_000
