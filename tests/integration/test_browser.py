"""The console in a real browser (Debian's headless Chromium driven by Selenium), as a new admin would click
it: sign in with Microsoft, connect Azure DevOps, import a repository, and see its PRs get statuses; find why a
PR got no run, replay a delivery, read the overview; and what Azure DevOps and dbt Cloud send (titles,
branches, repository names, run messages) shown as text, never run. A failing test leaves a screenshot and the
page's HTML in the stack's log directory."""

from __future__ import annotations

import re
import time

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait
from sqlalchemy import delete, select

from bridge.dev.sandbox.control import wait_until
from bridge.dev.stack import ADMIN_TOKEN, ENTRA_USER, DevstackError, ensure_binaries
from bridge.models import DbtWebhookRecord, Delivery, Repository

PROJECT, REPO = "Marketing", "dbt-marketing"


@pytest.fixture(scope="module")
def browser(bridge):
    try:
        paths = ensure_binaries("chromium", "chromedriver")  # apt-get when root, else says what to install
    except DevstackError as exc:
        pytest.fail(str(exc))
    options = webdriver.ChromeOptions()
    options.binary_location = paths["chromium"]
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--window-size=1280,1600"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(paths["chromedriver"]), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


@pytest.fixture(autouse=True)
def screenshot_on_failure(request, bridge, browser):
    yield
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        name = re.sub(r"[^A-Za-z0-9_.-]+", "-", request.node.name)[:100]
        browser.save_screenshot(str(bridge.stack.logs / f"browser-{name}.png"))
        (bridge.stack.logs / f"browser-{name}.html").write_text(browser.page_source)


def waiting(driver, timeout: float = 30) -> WebDriverWait:
    """Job pages reload themselves every second: an element found just before a reload goes stale."""
    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,))


def body_text(driver) -> str:
    """The page's text; "" while a navigation replaces the document (Chromium then says the node is gone)."""
    try:
        return driver.find_element(By.TAG_NAME, "body").text
    except WebDriverException as exc:
        if "does not belong to the document" in str(exc):
            return ""
        raise


def wait_for_text(driver, text: str, timeout: float = 30):
    waiting(driver, timeout).until(lambda d: text in body_text(d), message=f"page never showed {text!r}")


def test_a_new_admin_imports_a_repository_in_a_couple_of_clicks(bridge, browser):
    sb = bridge.sandbox
    sb._post("/repos", {"org": "fabrikam", "project": PROJECT, "name": REPO})
    sb._post("/idp/setup", {"sign_in": ENTRA_USER["oid"]})
    browser.get(f"{bridge.web}/console")
    browser.find_element(By.LINK_TEXT, "Sign in with Microsoft").click()  # the fake identity platform answers
    wait_for_text(browser, f"Signed in as {ENTRA_USER['upn']} (admin)")
    browser.find_element(By.LINK_TEXT, "Connect Azure DevOps (Microsoft Entra ID)").click()
    wait_for_text(browser, f"Connected {ENTRA_USER['upn']}")

    browser.find_element(By.LINK_TEXT, "Import a repository").click()

    def organizations_listed():
        browser.refresh()  # the worker reads the new connection's organizations within seconds
        return browser.find_elements(By.NAME, "org")

    wait_until(organizations_listed, timeout=30, what="the connection's organizations")
    Select(browser.find_element(By.NAME, "org")).select_by_visible_text("fabrikam")
    browser.find_element(By.XPATH, "//button[text()='Show projects']").click()
    waiting(browser).until(lambda d: d.find_elements(By.XPATH, f"//button[text()='{PROJECT}']"))[0].click()
    waiting(browser).until(lambda d: d.find_elements(By.XPATH, f"//tr[td[text()='{REPO}']]//button"))
    browser.find_element(By.XPATH, f"//tr[td[text()='{REPO}']]//button[contains(., 'Set up CI')]").click()
    waiting(browser).until(lambda d: d.find_elements(By.NAME, "policy"))  # the dbt Cloud job form
    button = browser.find_elements(By.XPATH, "//button[text()='Set up CI']")
    assert browser.find_element(By.NAME, "policy").is_selected()  # requiring the status is the default
    browser.find_element(By.XPATH, "//input[@name='job_choice'][@value='create']").click()  # a new CI job
    name = browser.find_element(By.NAME, "job_name")
    name.clear()
    name.send_keys("PR CI (marketing)")
    button[0].click()
    wait_for_text(browser, "Set-up of fabrikam/")
    waiting(browser, 40).until(lambda d: "Working" not in d.find_element(By.TAG_NAME, "body").text)
    body = browser.find_element(By.TAG_NAME, "body").text
    assert ": created" in body, body
    for step in ("ci job", "service hooks", "dbt webhook", "branch policy"):
        row = browser.find_element(By.XPATH, f"//tr[td[text()='{step}']]").text
        assert "created" in row, row

    opened = sb.open_pr(repository=REPO, title="from the browser")
    wait_until(lambda: sb.latest_state(opened["pr"], 1) == "succeeded", timeout=40, what="CI status")
    assert sb.complete(opened["pr"]) == (True, [])
    browser.find_element(By.LINK_TEXT, "Repositories").click()
    wait_for_text(browser, f"fabrikam/{PROJECT}/{REPO}")


def test_the_console_refuses_to_be_framed_and_its_policy_breaks_nothing(bridge, browser):
    browser.get(f"{bridge.web}/console/sign-in")
    # the stylesheet loads under style-src 'self' (layout.css sets a 2rem margin)
    assert browser.execute_script("return getComputedStyle(document.body).marginTop") == "32px"
    browser.get(f"data:text/html,<iframe id=f src='{bridge.web}/console/sign-in' width=600 height=300></iframe>")
    time.sleep(1)  # let the frame load (or be refused)
    browser.switch_to.frame("f")
    try:
        framed = browser.find_element(By.TAG_NAME, "body").text
    except WebDriverException:
        framed = ""
    finally:
        browser.switch_to.default_content()
    assert "Sign in" not in framed and "admin token" not in framed.lower()


# -- history pages ----------------------------------------------------------------------------------------

def sign_in_with_token(bridge, browser) -> None:
    browser.get(f"{bridge.web}/console/sign-in")
    browser.find_element(By.NAME, "token").send_keys(ADMIN_TOKEN)
    browser.find_element(By.XPATH, "//button[text()='Sign in']").click()
    wait_for_text(browser, "Signed in as admin (admin)")


def test_an_admin_finds_a_prs_story_and_replays_its_delivery_in_the_browser(bridge, browser):
    sb = bridge.sandbox
    opened = sb.open_pr(title="Browser story", source="feature/browser-story")
    pr = opened["pr"]
    wait_until(lambda: sb.latest_state(pr, 1) == "succeeded", timeout=30, what="the run")
    with bridge.db.session() as s:
        delivery = s.scalars(select(Delivery).where(Delivery.pull_request_id == pr).order_by(Delivery.id)).first()
        delivery.state, delivery.error = "failed", "gave up after retries: HTTP 503"
        delivery_id = delivery.id
    sign_in_with_token(bridge, browser)
    browser.find_element(By.LINK_TEXT, "Pull requests").click()
    browser.find_element(By.NAME, "q").send_keys("browser-story")
    browser.find_element(By.XPATH, "//button[text()='Search']").click()
    arrived(browser, "q=browser-story")  # the old page has a link with the same text: wait for the new one
    browser.find_element(By.XPATH, f"//a[substring(@href, string-length(@href) - string-length('/prs/{pr}') + 1)"
                                   f" = '/prs/{pr}']").click()
    arrived(browser, f"/prs/{pr}")
    why = browser.find_element(By.CSS_SELECTOR, "p.why").text
    assert why.startswith("dbt run ") and " passed in " in why, why  # it failed after its work was done
    wait_for_text(browser, f"received as delivery {delivery_id}, now failed: gave up after retries: HTTP 503")
    browser.find_element(By.XPATH, f"//a[@href='/console/deliveries/{delivery_id}']").click()  # from the timeline
    wait_for_text(browser, f"Delivery {delivery_id}: git.pullrequest.created")

    browser.find_element(By.LINK_TEXT, "Deliveries").click()
    arrived(browser, "/console/deliveries")
    browser.find_element(By.XPATH, "//input[@name='state'][@value='failed']").click()
    browser.find_element(By.XPATH, "//button[text()='Show']").click()
    arrived(browser, "state=failed")
    browser.find_element(By.XPATH, f"//input[@name='id'][@value='{delivery_id}']").click()
    browser.find_element(By.XPATH, "//button[text()='Replay the chosen deliveries']").click()
    wait_for_text(browser, "Replay 1 delivery?")
    browser.find_element(By.XPATH, "//button[text()='Replay']").click()
    wait_for_text(browser, "1 of 1 deliveries sent to the workers again.")
    wait_until(lambda: _state(bridge, delivery_id) == "processed", timeout=30, what="the replayed delivery")
    browser.get(f"{bridge.web}/console/deliveries/{delivery_id}")
    wait_for_text(browser, f"delivery {delivery_id} sent to the workers again")


def arrived(browser, part: str) -> None:
    """Wait for the navigation a click started: until the address holds ``part``."""
    waiting(browser).until(lambda d: part in d.current_url, message=f"never arrived at …{part}…")


def _state(bridge, delivery_id: int) -> str:
    with bridge.db.session() as s:
        return s.get(Delivery, delivery_id).state


def test_the_overview_draws_each_repositorys_runs_without_script(bridge, browser):
    sb = bridge.sandbox
    failing = sb.open_pr(deliver=False, title="Overview failure")
    sb.outcome(sha=failing["head"], outcome="error", message="1 of 3 models failed")
    sb.deliver(failing["event_id"])
    wait_until(lambda: sb.latest_state(failing["pr"], 1) == "failed", timeout=30, what="the failing run")
    sign_in_with_token(bridge, browser)
    browser.find_element(By.LINK_TEXT, "Overview").click()
    wait_for_text(browser, "CI runs over the last 7 days")
    row = browser.find_element(By.XPATH, "//tr[td/a[text()='fabrikam/Fabrikam-Fiber-Git/dbt-analytics']]")
    assert row.find_elements(By.CSS_SELECTOR, "svg rect.passed") and row.find_elements(By.CSS_SELECTOR,
                                                                                       "svg rect.failed")
    bar = row.find_elements(By.CSS_SELECTOR, "svg rect.failed")[-1]
    assert bar.size["height"] > 0 and bar.get_attribute("fill") == "#c33"
    assert "%" in row.text  # the pass rate


HOSTILE = "<script>document.title='pwned'</script><img id=pwn src=x onerror=\"document.title='pwned'\"><b id=pwnb>b</b>"


def test_what_azure_devops_and_dbt_cloud_send_is_shown_as_text_and_never_runs(bridge, browser):
    sb = bridge.sandbox
    opened = sb.open_pr(deliver=False, title=f"T {HOSTILE}", source="feature/<svg onload=alert(1) id=pwns>")
    sb.outcome(sha=opened["head"], outcome="error", message=f"M {HOSTILE}")
    sb.deliver(opened["event_id"])
    pr = opened["pr"]
    wait_until(lambda: sb.latest_state(pr, 1) == "failed", timeout=30, what="the failing run")
    with bridge.db.session() as s:  # a repository whose name Azure DevOps let someone choose
        first = s.scalar(select(Repository).order_by(Repository.id))
        hostile = Repository(organization_id=first.organization_id, ado_project_id=first.ado_project_id,
                             ado_project_name=first.ado_project_name, ado_repository_id="hostile-repo",
                             name=f"R {HOSTILE}", dbt_account_id=first.dbt_account_id, ci_job_id=first.ci_job_id)
        s.add(hostile)
        s.flush()
        hostile_id, repository_id = hostile.id, first.id
        s.add(DbtWebhookRecord(repository_id=hostile_id, dbt_account_id=first.dbt_account_id, status="inactive",
                               problem=f"P {HOSTILE}"))  # listed on the overview as needing a person
        s.add(Delivery(source="azure-devops", dedupe_key="hostile-1", event_type="E <b id=pwnb>b</b>",
                       event={"x": HOSTILE}, state="failed", error=f"X {HOSTILE}", repository_id=hostile_id,
                       pull_request_id=1))
    try:
        sign_in_with_token(bridge, browser)
        for path in (f"/console/repositories/{repository_id}/prs/{pr}", f"/console/repositories/{hostile_id}",
                     f"/console/repositories/{hostile_id}/prs/1", "/console/prs", "/console/overview",
                     "/console/deliveries", "/console/repositories"):
            browser.get(f"{bridge.web}{path}")
            assert browser.title != "pwned", path  # what the script would have set
            assert not browser.find_elements(By.CSS_SELECTOR, "#pwn, #pwnb, #pwns, body script"), path
            assert "<script>document.title='pwned'</script>" in browser.find_element(By.TAG_NAME, "body").text, path
        browser.get(f"{bridge.web}/console/repositories/{repository_id}/prs/{pr}")
        body = browser.find_element(By.TAG_NAME, "body").text
        assert f"T {HOSTILE}" in body and f"M {HOSTILE}" in body and "feature/<svg onload=alert(1) id=pwns>" in body
    finally:
        with bridge.db.session() as s:
            s.execute(delete(Delivery).where(Delivery.repository_id == hostile_id))
            s.execute(delete(DbtWebhookRecord).where(DbtWebhookRecord.repository_id == hostile_id))
            s.execute(delete(Repository).where(Repository.id == hostile_id))
