#!/usr/bin/env python3
"""Drives the operator console (`/ui`, CONTRACT §9) in a real headless Chromium through Selenium.

Given a running `dispatch serve` holding a completed sandbox request (a text and a binary file changed, verification
run), a running request, a request held running until this script releases it, a failed request, more requests under
one id prefix than the list shows on a page, and a completed request whose agent printed HTML, it checks what an
operator sees and prints a JSON report; exit 0 only if every check holds.
"""
import argparse
import json
import os
import sys
import time
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import (NoAlertPresentException, NoSuchElementException, StaleElementReferenceException,
                                        TimeoutException)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait


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
    # The page redraws itself (refresh, follow): an element read while it is replaced is looked up again next poll.
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.1, ignored_exceptions=[StaleElementReferenceException]).until(
            lambda d: condition(d) or None)
    except TimeoutException:
        return None


def text_of(driver, selector):
    try:
        return driver.find_element(By.CSS_SELECTOR, selector).text
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def list_rows(driver):
    """The list's rows as {requestId: row text}; {} while it is not drawn (or is being redrawn)."""
    try:
        return {row.get_attribute("data-request-id"): row.text for row in driver.find_elements(By.CSS_SELECTOR, "tr[data-request-id]")}
    except StaleElementReferenceException:
        return {}


def on_fresh(driver, selector, action):
    """Runs `action` on the element `selector` finds, again if the list's refresh replaced it meanwhile."""
    for _ in range(5):
        try:
            return action(driver.find_element(By.CSS_SELECTOR, selector))
        except (StaleElementReferenceException, NoSuchElementException):
            time.sleep(0.2)
    return action(driver.find_element(By.CSS_SELECTOR, selector))


def mark_table(driver):
    """Marks the list's table as it is now, for `redrawn`."""
    driver.execute_script("const t = document.querySelector('#main table'); if (t) t.dataset.seen = 'yes'")


def redrawn(driver):
    """Whether the list's table is another than the one `mark_table` marked (the page drew the list anew)."""
    return driver.execute_script("const t = document.querySelector('#main table'); return t !== null && !t.dataset.seen")


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
    with urllib.request.urlopen(f"{args.url}/", timeout=10) as response:
        info = json.load(response)
    sha = str(info.get("gitSha") or "")
    report.check("summary-shows-the-version-and-git-sha", bool(info.get("version")) and len(sha) >= 7 and
                 str(info["version"]) in summary and sha[:12] in summary and f"isolation {info['isolation']}" in summary and
                 f"store {info['store']}" in summary, {"summary": summary, "version": info.get("version"), "gitSha": sha})
    if args.screenshots:
        driver.save_screenshot(os.path.join(args.screenshots, "console-list.png"))


def usage_view(driver, args, report):
    """Tokens and cost (CONTRACT §11): in the list's row of the request, in its detail and in its attempt's row."""
    driver.get(f"{args.url}/ui#token={args.token}")
    row = wait_for(driver, lambda d: list_rows(d).get(args.usage_request)) or ""
    report.check("list-shows-tokens-and-cost", args.tokens in row and args.cost in row, row)
    driver.get(f"{args.url}/ui/requests/{args.usage_request}#token={args.token}")
    wait_for(driver, lambda d: text_of(d, "#outcome"))
    cells = driver.execute_script("""
        return Array.from(document.querySelectorAll('td.usage, td.cost, dd')).map((cell) => cell.textContent);""")
    report.check("detail-shows-tokens-and-cost-of-the-request-and-its-attempt",
                 cells.count(args.tokens) >= 2 and cells.count(args.cost) >= 2, cells)


def status_filter(driver, args, report):
    """Filtering by status (through the select) hides the other statuses, and the automatic refresh keeps the filter."""
    driver.get(f"{args.url}/ui")
    wait_for(driver, lambda d: args.completed in list_rows(d))
    on_fresh(driver, "#status", lambda select: Select(select).select_by_value("failed"))
    rows = wait_for(driver, lambda d: (lambda rows: rows if rows and args.completed not in rows else None)(list_rows(d))) or {}
    report.check("status-filter-shows-only-that-status", args.failed in rows and args.completed not in rows and
                 args.running not in rows and all("failed" in text for text in rows.values()), rows)
    # Focus stays on the select after applying it (the redraw puts it back): the list still redraws itself every 3 s
    # (it once froze until the operator clicked elsewhere).
    focused = driver.execute_script("return document.activeElement ? document.activeElement.id : null")
    mark_table(driver)
    again = wait_for(driver, lambda d: (lambda rows: rows if rows and redrawn(d) else None)(list_rows(d)), timeout=12) or {}
    selected = driver.execute_script("const s = document.getElementById('status'); return s ? s.value : null")
    report.check("refresh-keeps-the-status-filter", bool(again) and args.failed in again and args.completed not in again and
                 all("failed" in text for text in again.values()) and selected == "failed" and "status=failed" in driver.current_url
                 and focused == "status",
                 {"rows": again, "select": selected, "url": driver.current_url, "focused before the refresh": focused})


def prefix_and_paging(driver, args, report):
    """Searching by id prefix shows only ids with it; with more of them than a page holds, Older shows the rest."""
    driver.get(f"{args.url}/ui")
    wait_for(driver, lambda d: args.completed in list_rows(d))
    on_fresh(driver, "#prefix", lambda search: search.send_keys(args.page_prefix, Keys.ENTER))
    first = wait_for(driver, lambda d: (lambda rows: rows if rows and args.completed not in rows else None)(list_rows(d))) or {}
    report.check("prefix-search-shows-only-matching-ids", len(first) > 1 and all(id.startswith(args.page_prefix) for id in first)
                 and args.completed not in first and f"prefix={args.page_prefix}" in driver.current_url,
                 {"ids": sorted(first), "url": driver.current_url})
    older = driver.find_elements(By.ID, "older")
    report.check("paging-offers-older-when-there-are-more", bool(older) and bool(first) and args.oldest not in first, sorted(first)[:3])
    if not older:
        return
    on_fresh(driver, "#older", lambda button: button.click())
    second = wait_for(driver, lambda d: (lambda rows: rows if rows and not set(rows) & set(first) else None)(list_rows(d))) or {}
    report.check("paging-older-shows-the-older-ids", args.oldest in second and not set(second) & set(first) and
                 all(id.startswith(args.page_prefix) for id in second) and "before=" in driver.current_url,
                 {"ids": sorted(second), "url": driver.current_url})
    newest = driver.find_elements(By.ID, "newest")
    if newest:
        on_fresh(driver, "#newest", lambda button: button.click())
    back = wait_for(driver, lambda d: (lambda rows: rows if rows and args.oldest not in rows else None)(list_rows(d))) or {}
    report.check("paging-newest-goes-back-to-the-first-page", bool(newest) and set(back) == set(first), sorted(back)[:3])


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
    # A binary file is named in the diff: its file header, then a line marked binary under it.
    binaries = driver.execute_script("""
        const named = []; let file = null;
        for (const span of document.querySelectorAll('#diff span')) {
          if (span.classList.contains('file')) file = span.textContent;
          else if (span.classList.contains('binary') && file) named.push(file);
        }
        return named;""")
    touched = text_of(driver, "#touched")
    report.check("diff-names-the-binary-file", any(f"b/{args.binary_file}" in header for header in binaries) and
                 args.binary_file in touched, {"binary": binaries, "touched": touched})
    verification = text_of(driver, "#verification")
    section = driver.execute_script("const v = document.getElementById('verification'); return v ? v.parentNode.innerText : ''")
    report.check("detail-shows-the-verification-commands-and-output", args.verification_output in verification and
                 args.verification_command in section and "Verification passed" in section, section[:300])
    network = text_of(driver, "#network")
    report.check("detail-lists-the-refused-connections", args.denied in (network or "") and "not in DISPATCH_EGRESS_ALLOW" in (network or ""),
                 (network or "")[:300])
    pwned = driver.execute_script("return window.__pwned === true")
    report.check("html-in-the-patch-is-shown-as-text", "<script>" in (diff or "") and not pwned and
                 not driver.find_elements(By.CSS_SELECTOR, "#diff script, #touched script"), {"pwned": pwned})
    if args.screenshots:
        # Tall enough for the whole detail, the diff included.
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(1280, min(max(900, height + 120), 3000))
        driver.save_screenshot(os.path.join(args.screenshots, "console-detail.png"))
        driver.set_window_size(1280, 900)
    log_streams(driver, args, report)


def log_streams(driver, args, report):
    """The detail's log shows stdout first; the stderr switch shows the agent's stderr instead (and back)."""
    stdout = text_of(driver, "#log")
    switch = driver.find_elements(By.CSS_SELECTOR, "button[data-stream=stderr]")
    if switch:
        switch[0].click()
    stderr = wait_for(driver, lambda d: text_of(d, "#log") if args.stderr_line in text_of(d, "#log") else None) or text_of(driver, "#log")
    pressed = [button.get_attribute("aria-pressed") for button in driver.find_elements(By.CSS_SELECTOR, "button[data-stream]")]
    report.check("log-switches-to-stderr", bool(switch) and args.log_line in stdout and args.stderr_line not in stdout and
                 args.stderr_line in stderr and args.log_line not in stderr and pressed == ["false", "true"],
                 {"stdout": stdout[-200:], "stderr": stderr[-200:], "pressed": pressed})
    back = driver.find_elements(By.CSS_SELECTOR, "button[data-stream=stdout]")
    if back:
        back[0].click()
    again = wait_for(driver, lambda d: text_of(d, "#log") if args.log_line in text_of(d, "#log") else None) or text_of(driver, "#log")
    report.check("log-switches-back-to-stdout", args.log_line in again and args.stderr_line not in again, again[-200:])


def log_follow(driver, args, report):
    """A running request's log is followed: a line the agent writes after the page showed the log appears in it."""
    driver.get(f"{args.url}/ui/requests/{args.follow}#token={args.token}")
    switch = wait_for(driver, lambda d: d.find_elements(By.CSS_SELECTOR, "button[data-stream=stderr]"))
    if switch:
        switch[0].click()
    # The stream answered with what the agent wrote so far (and not yet the line it writes once released).
    before = wait_for(driver, lambda d: (lambda text: text if text.strip() and not text.startswith("(") else None)(text_of(d, "#log"))
                      if d.find_elements(By.CSS_SELECTOR, "button[data-stream=stderr][aria-pressed=true]") else None)
    driver.execute_script("const l = document.getElementById('log'); if (l) l.dataset.seen = 'yes'")
    open(args.follow_release, "w").close()
    # The same log element (no redraw, no reload) receives the new line.
    after = wait_for(driver, lambda d: (lambda text: text if args.follow_line in text else None)(d.execute_script(
        "const l = document.getElementById('log'); return l && l.dataset.seen === 'yes' ? l.textContent : ''")), timeout=15)
    report.check("log-follows-a-running-request", before is not None and args.follow_line not in before and after is not None,
                 {"before": (before or "")[-200:], "after": (after or text_of(driver, "#log"))[-200:]})


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
    for name in ("url", "token", "completed", "running", "sandbox", "xss", "answer", "log-line", "changed-file", "new-content",
                 "failed", "page-prefix", "oldest", "stderr-line", "binary-file", "verification-command", "verification-output",
                 "follow", "follow-release", "follow-line", "denied", "usage-request", "tokens", "cost"):
        parser.add_argument(f"--{name}", required=True)
    parser.add_argument("--screenshots")
    args = parser.parse_args()
    report = Report()
    without_token(args, report)
    driver = browser()
    try:
        list_view(driver, args, report)
        status_filter(driver, args, report)
        prefix_and_paging(driver, args, report)
        detail_view(driver, args, report)
        usage_view(driver, args, report)
        log_follow(driver, args, report)
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
