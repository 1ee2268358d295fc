#!/usr/bin/env python3
"""Drives the operator console (`/ui`, CONTRACT §9) in a real headless Chromium through Selenium.

Given a running `dispatch serve` holding a completed sandbox request, a running request and a completed request whose
agent printed HTML, it checks what an operator sees and prints a JSON report; exit 0 only if every check holds.
"""
import argparse
import json
import os
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, NoSuchElementException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait


def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                 "--no-first-run", "--disable-extensions", "--disable-background-networking"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    return driver


def wait_for(driver, condition, timeout=15):
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: condition(d) or None)
    except TimeoutException:
        return None


def text_of(driver, selector):
    try:
        return driver.find_element(By.CSS_SELECTOR, selector).text
    except NoSuchElementException:
        return ""


class Report:
    def __init__(self):
        self.checks = []

    def check(self, name, ok, detail):
        self.checks.append({"name": name, "ok": bool(ok), "detail": detail})


def list_view(driver, args, report):
    driver.get(f"{args.url}/ui#token={args.token}")
    rows = wait_for(driver, lambda d: {row.get_attribute("data-request-id"): row.text
                                       for row in d.find_elements(By.CSS_SELECTOR, "tr[data-request-id]")}
                    if len(d.find_elements(By.CSS_SELECTOR, "tr[data-request-id]")) >= 2 else None) or {}
    completed, running = rows.get(args.completed, ""), rows.get(args.running, "")
    report.check("list-shows-both-ids", args.completed in rows and args.running in rows, sorted(rows))
    report.check("list-shows-both-statuses", "completed" in completed and "running" in running, [completed, running])
    report.check("token-left-the-address-bar", "#token" not in driver.current_url and args.token not in driver.current_url,
                 driver.current_url)
    summary = text_of(driver, "#summary")
    report.check("summary-shows-isolation-and-store", "isolation" in summary and "store" in summary, summary)
    if args.screenshots:
        driver.save_screenshot(os.path.join(args.screenshots, "console-list.png"))


def detail_view(driver, args, report):
    driver.get(f"{args.url}/ui/requests/{args.sandbox}#token={args.token}")
    diff = wait_for(driver, lambda d: text_of(d, "#diff"))
    outcome = text_of(driver, "#outcome")
    report.check("detail-shows-the-answer", args.answer in outcome, outcome[:300])
    log = wait_for(driver, lambda d: text_of(d, "#log") if args.log_line in text_of(d, "#log") else None) or text_of(driver, "#log")
    report.check("detail-shows-a-log-line", args.log_line in log, log[-300:])
    report.check("detail-shows-the-changed-file-in-the-diff", diff is not None and args.changed_file in diff and
                 f"+{args.new_content}" in diff, (diff or "")[:400])
    added = driver.find_elements(By.CSS_SELECTOR, "#diff span.add")
    report.check("diff-marks-added-lines", any(args.new_content in span.text for span in added), len(added))
    pwned = driver.execute_script("return window.__pwned === true")
    report.check("html-in-the-patch-is-shown-as-text", "<script>" in (diff or "") and not pwned and
                 not driver.find_elements(By.CSS_SELECTOR, "#diff script, #touched script"), {"pwned": pwned})
    if args.screenshots:
        # Tall enough for the whole detail, the diff included.
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(max(900, height + 120), 3000))
        driver.save_screenshot(os.path.join(args.screenshots, "console-detail.png"))
        driver.set_window_size(1280, 900)


def hostile_output(driver, args, report):
    driver.get(f"{args.url}/ui/requests/{args.xss}#token={args.token}")
    outcome = wait_for(driver, lambda d: text_of(d, "#outcome") if "<script>" in text_of(d, "#outcome") else None) or ""
    time.sleep(0.5)
    ran = driver.execute_script("return [window.__pwned === true, document.title]")
    images = driver.find_elements(By.CSS_SELECTOR, "#outcome img, #log img, #outcome script, #log script")
    report.check("html-in-agent-output-is-shown-as-text", "<script>" in outcome and "<img" in outcome, outcome[:300])
    report.check("html-in-agent-output-does-not-run", not ran[0] and ran[1] != "pwned" and not images,
                 {"pwned": ran[0], "title": ran[1], "elements": len(images)})


def cancel_button(driver, args, report):
    driver.get(f"{args.url}/ui/requests/{args.running}#token={args.token}")
    button = wait_for(driver, lambda d: d.find_element(By.ID, "cancel") if d.find_elements(By.ID, "cancel") else None)
    report.check("cancel-enabled-while-running", button is not None and button.is_enabled(), None)
    if button is None:
        return
    button.click()
    try:
        alert = WebDriverWait(driver, 5).until(lambda d: d.switch_to.alert)
        prompt = alert.text
        alert.accept()
    except (TimeoutException, NoAlertPresentException):
        prompt = None
    report.check("cancel-asks-first", prompt is not None and args.running in prompt, prompt)
    status = wait_for(driver, lambda d: text_of(d, ".controls .status") if text_of(d, ".controls .status") == "cancelled" else None)
    report.check("cancel-ends-the-request", status == "cancelled", text_of(driver, ".controls .status"))
    after = wait_for(driver, lambda d: d.find_element(By.ID, "cancel") if not d.find_element(By.ID, "cancel").is_enabled() else None)
    report.check("cancel-disabled-once-terminal", after is not None, None)


def without_token(args, report):
    driver = browser()
    try:
        driver.get(f"{args.url}/ui")
        form = wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "form.token"))
        time.sleep(0.5)
        source = driver.page_source
        report.check("no-token-shows-a-prompt", bool(form), None)
        report.check("no-token-shows-no-data", args.completed not in source and args.running not in source and
                     args.answer not in source, None)
        driver.get(f"{args.url}/ui/requests/{args.sandbox}")
        time.sleep(1)
        report.check("no-token-shows-no-detail", args.answer not in driver.page_source, None)
    finally:
        driver.quit()


def main():
    parser = argparse.ArgumentParser()
    for name in ("url", "token", "completed", "running", "sandbox", "xss", "answer", "log-line", "changed-file", "new-content"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--screenshots")
    args = parser.parse_args()
    report = Report()
    without_token(args, report)
    driver = browser()
    try:
        list_view(driver, args, report)
        detail_view(driver, args, report)
        hostile_output(driver, args, report)
        cancel_button(driver, args, report)
        # Nothing the page does may be refused by its own Content-Security-Policy.
        refused = [entry["message"] for entry in driver.get_log("browser")
                   if "Content Security Policy" in entry["message"] or "Trusted Type" in entry["message"]]
        report.check("no-content-security-policy-violations", not refused, refused[:3])
    finally:
        driver.quit()
    ok = all(check["ok"] for check in report.checks)
    print(json.dumps({"ok": ok, "checks": report.checks}, indent=2))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
