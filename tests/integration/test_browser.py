"""The set-up flow in a real browser (Debian's headless Chromium driven by Selenium), as a new admin would
click it: sign in with Microsoft, connect Azure DevOps, import a repository, and see its PRs get statuses."""

from __future__ import annotations

import time

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from bridge.dev.sandbox.control import wait_until
from bridge.dev.stack import ENTRA_USER, DevstackError, ensure_binaries

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


def waiting(driver, timeout: float = 30) -> WebDriverWait:
    """Job pages reload themselves every second: an element found just before a reload goes stale."""
    return WebDriverWait(driver, timeout, ignored_exceptions=(StaleElementReferenceException,))


def wait_for_text(driver, text: str, timeout: float = 30):
    waiting(driver, timeout).until(lambda d: text in d.find_element(By.TAG_NAME, "body").text,
                                   message=f"page never showed {text!r}")


def test_a_new_admin_imports_a_repository_in_a_couple_of_clicks(bridge, browser):
    sb = bridge.sandbox
    sb._post("/repos", {"org": "fabrikam", "project": PROJECT, "name": REPO})
    sb._post("/idp/setup", {"sign_in": ENTRA_USER["oid"]})
    try:
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
    except (WebDriverException, AssertionError, TimeoutError):
        browser.save_screenshot(str(bridge.stack.logs / "browser-failure.png"))
        (bridge.stack.logs / "browser-failure.html").write_text(browser.page_source)
        raise


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
