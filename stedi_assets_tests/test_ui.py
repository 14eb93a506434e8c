"""The Dagster UI, driven as a user drives it: a real `dagster dev` and a real headless Chromium.

One test walks the path a user takes: open the lineage view, see the three zones and their
tables, press *Materialize all*, wait for the run, then read the ML table's row count and its
blocking checks in the UI, and confirm the lake really was written.

The module starts one headless Chromium and one `dagster dev` (automation off) for the tests
that click, which run on it in file order: the first materializes the fresh lake, the last
leaves a conflicting reading in landing (its failed audit). The automation test has a
`dagster dev` of its own, as the README starts it, on a fresh lake.

Driver: Selenium with Debian's `chromium` and `chromium-driver` (built from the same source,
so their versions always match; nothing is downloaded at run time).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml
from deltalake import DeltaTable

from stedi_assets.settings import SAMPLE_SOURCE
from stedi_assets_tests.conftest import IN_CI, REPO

pytestmark = pytest.mark.browser

GROUPS = {
    "landing": {"customer_landing", "accelerometer_landing", "step_trainer_landing"},
    "trusted": {"customer_trusted", "accelerometer_trusted", "step_trainer_trusted"},
    "curated": {"customer_curated", "machine_learning_curated"},
}
ML_CHECKS = ("same_customer", "no_direct_identifiers", "no_duplicate_rows", "no_erased_person")
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",  # the CI machine runs as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1200",
)
SERVER_START_TIMEOUT = 120  # dagster dev: webserver, daemon and the code server's import
RUN_TIMEOUT = 120  # the sample lakehouse run takes about ten seconds here
UI_TIMEOUT = 30  # any one page or element
AUTOMATION_INTERVAL = 10  # seconds between sensor and automation ticks in the automation test
ARRIVAL_TIMEOUT = 120  # the bound: a new file reaches the ML table's page within two minutes
FIRST_INGEST_TIMEOUT = 240  # the sensors ingest the whole sample on their own first


def _unavailable(reason: str) -> None:
    """Outside CI a machine without a browser skips; in CI that is a broken setup."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: the UI test must run)")
    pytest.skip(reason)


@dataclass(frozen=True)
class Browser:
    chromium: str
    chromedriver: str


@pytest.fixture(scope="module")
def browser_binaries() -> Browser:
    chromium = shutil.which("chromium")
    chromedriver = shutil.which("chromedriver")
    if not chromium or not chromedriver:
        _unavailable("Debian's chromium and chromium-driver are needed: apt-get install chromium chromium-driver")
    try:
        import selenium  # noqa: F401
    except ImportError:
        _unavailable("selenium is not installed: pip install -e '.[dev]'")
    return Browser(chromium, chromedriver)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop_group(process: subprocess.Popen, grace: float = 20) -> None:
    """SIGTERM the process group (dagster dev's webserver, daemon, code server and run
    workers, or chromedriver and its Chromium), then SIGKILL what is left."""
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        # The leader is gone; children in the group may linger a moment.
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(process.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


@contextlib.contextmanager
def _sigint_not_ignored() -> Iterator[None]:
    """A runner started in the background ignores SIGINT, and children inherit that; `dagster
    dev` then ignores SIGTERM too (it handles SIGTERM as it handles SIGINT) and could only be
    killed. Let the child start with the default handler, so it shuts down cleanly."""
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        yield
        return
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)


class DagsterUI:
    """A running `dagster dev` and its GraphQL API."""

    def __init__(self, url: str, process: subprocess.Popen, log: Path, lake: Path, source: Path):
        self.url = url
        self.process = process
        self.log = log
        self.lake = lake
        self.source = source

    def log_tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def graphql(self, query: str, **variables) -> dict:
        request = urllib.request.Request(
            f"{self.url}/graphql",
            data=json.dumps({"query": query, "variables": variables}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = json.load(response)
        assert "errors" not in body, body["errors"]
        return body["data"]

    def wait_until_loaded(self, timeout: float) -> None:
        """Until the webserver answers and the `stedi` code location has loaded its defs."""
        query = """{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus
            locationOrLoadError { __typename ... on PythonError { message stack } } } } } }"""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"dagster dev exited {self.process.returncode}\n{self.log_tail()}")
            try:
                entries = self.graphql(query)["workspaceOrError"]["locationEntries"]
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                entries = []  # not serving yet
            for entry in entries:
                loaded = entry["locationOrLoadError"]
                if entry["loadStatus"] != "LOADED" or not loaded:
                    continue
                if loaded["__typename"] == "PythonError":
                    stack = "".join(loaded["stack"])
                    raise AssertionError(f"definitions failed to load in the webserver:\n{loaded['message']}{stack}")
                if loaded["__typename"] == "RepositoryLocation":
                    return
            time.sleep(0.5)
        raise AssertionError(f"dagster dev did not serve the stedi location within {timeout}s\n{self.log_tail()}")

    def wait_for_run(self, run_id: str, timeout: float) -> str:
        query = "query($id: ID!) { runOrError(runId: $id) { __typename ... on Run { status } } }"
        deadline = time.monotonic() + timeout
        status = None
        while time.monotonic() < deadline:
            status = self.graphql(query, id=run_id)["runOrError"].get("status")
            if status in {"SUCCESS", "FAILURE", "CANCELED"}:
                return status
            time.sleep(0.5)
        raise AssertionError(f"run {run_id} still {status} after {timeout}s\n{self.log_tail()}")


@contextlib.contextmanager
def _dagster_dev(tmp_path: Path, **settings: str) -> Iterator[DagsterUI]:
    """`dg dev` (Dagster's `dagster dev`) from the repo's workspace.yaml, as the README says, on a free port, with
    its own instance and lake in tmp_path, the bundled sample as the source, and `settings`."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    # The project's instance settings (no first-visit newsletter dialog over the page among them).
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home)
    lake = tmp_path / "lake"
    source = Path(shutil.copytree(SAMPLE_SOURCE, tmp_path / "source"))  # the bundled sample, free to edit
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEDI_")}
    env.update(DAGSTER_HOME=str(home), STEDI_LAKE=str(lake), STEDI_SOURCE=str(source), **settings)
    port = _free_port()
    log = tmp_path / "dagster_dev.log"
    dg = Path(sys.executable).parent / "dg"
    with log.open("wb") as out, _sigint_not_ignored():
        process = subprocess.Popen(
            [str(dg), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
            cwd=REPO,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group, so teardown reaches every child
        )
    ui = DagsterUI(f"http://127.0.0.1:{port}", process, log, lake, source)
    try:
        ui.wait_until_loaded(SERVER_START_TIMEOUT)
        yield ui
    finally:
        _stop_group(process)


@pytest.fixture(scope="module")
def dagster_ui(tmp_path_factory: pytest.TempPathFactory, browser_binaries: Browser) -> Iterator[DagsterUI]:
    """dagster dev with its sensors and automation off: runs start only when a test clicks.
    One for the module: its tests run on it in file order (see the module's docstring)."""
    with _dagster_dev(tmp_path_factory.mktemp("dagster_ui"), STEDI_AUTOMATION="false") as ui:
        yield ui


@pytest.fixture
def dagster_ui_automated(tmp_path: Path, browser_binaries: Browser) -> Iterator[DagsterUI]:
    """dagster dev as the README starts it, sensors and automation on (by default), ticking
    every ten seconds rather than thirty so the test waits less."""
    with _dagster_dev(tmp_path, STEDI_SENSOR_INTERVAL=str(AUTOMATION_INTERVAL)) as ui:
        yield ui


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory, browser_binaries: Browser):
    """Headless Chromium through Debian's chromedriver, one for the module; the last page is
    saved on teardown."""
    tmp_path = tmp_path_factory.mktemp("chromium")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = browser_binaries.chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path / 'chromium_profile'}")
    service = Service(
        browser_binaries.chromedriver,  # a given path: Selenium Manager never downloads anything
        log_output=str(tmp_path / "chromedriver.log"),
        popen_kw={"start_new_session": True},
    )
    chrome = webdriver.Chrome(options=options, service=service)
    try:
        yield chrome
    finally:
        with contextlib.suppress(Exception):  # a dead browser has no page to save
            chrome.save_screenshot(str(tmp_path / "last_page.png"))
        try:
            chrome.quit()
        finally:
            if service.process is not None:
                _stop_group(service.process, grace=5)


def _wait(driver, condition, message: str, timeout: float = UI_TIMEOUT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.2).until(condition, message)


def _body_text(driver) -> str:
    from selenium.webdriver.common.by import By

    return driver.find_element(By.TAG_NAME, "body").text


def _wait_for_text(driver, pattern: str, message: str) -> re.Match:
    """Poll the page's visible text until `pattern` matches; returns the match."""
    return _wait(driver, lambda d: re.search(pattern, _body_text(d)), message)


def _sidebar_tree(driver) -> dict[str, list[str]]:
    """Expand every group in the lineage view's sidebar and read which assets each holds."""
    from selenium.webdriver.common.by import By

    for group in GROUPS:
        # The row holds the disclosure arrow and a button labelled with the group's name.
        toggle = "button[.//*[@aria-label='arrow_drop_down']]"
        arrow = f"//*[@title='{group}']/ancestor::*[{toggle}][1]/{toggle}"
        _wait(driver, lambda d: d.find_element(By.XPATH, arrow), f"sidebar row of group {group}").click()
    members = set().union(*GROUPS.values())
    _wait(
        driver,
        lambda d: members <= {e.get_attribute("title") for e in d.find_elements(By.XPATH, "//*[@title]")},
        "the sidebar to list every zone table",
    )
    # The sidebar is a virtualized list of rows, `data-index` in order: a group, then its assets.
    tree: dict[str, list[str]] = {}
    current: list[str] = []
    rows = driver.find_elements(By.XPATH, "//*[@data-index][.//*[@title]]")
    for row in sorted(rows, key=lambda r: int(r.get_attribute("data-index"))):
        title = row.find_element(By.XPATH, ".//*[@title]").get_attribute("title")
        if row.find_elements(By.XPATH, ".//*[@aria-label='asset_group']"):
            current = tree.setdefault(title, [])
        else:
            current.append(title)
    return tree


def _materialize_all(driver, dagster_ui: DagsterUI) -> tuple[str, str]:
    """Press Materialize all on the lineage view; the run's id and how it ended."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    driver.get(f"{dagster_ui.url}/asset-groups")
    materialize_all = (By.XPATH, "//button[normalize-space()='Materialize all']")
    _wait(driver, expected_conditions.element_to_be_clickable(materialize_all), "Materialize all").click()
    toast_link = (By.XPATH, "//a[starts-with(@href, '/runs/')]")
    link = _wait(driver, expected_conditions.presence_of_element_located(toast_link), "the 'Launched run' toast")
    run_id = link.get_attribute("href").rsplit("/runs/", 1)[1]
    # dagster dev's daemon dequeues the run and the default launcher runs it in a subprocess.
    return run_id, dagster_ui.wait_for_run(run_id, RUN_TIMEOUT)


def test_materialize_all_from_the_ui(dagster_ui: DagsterUI, driver, tmp_path: Path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions

    # The lineage view: one node per zone in the graph, and each zone's tables in the sidebar.
    driver.get(f"{dagster_ui.url}/asset-groups")
    group_node = "//*[local-name()='foreignObject'][contains(@class, 'group')]//*[@data-tooltip='{}']"
    for group in GROUPS:
        _wait(driver, lambda d: d.find_element(By.XPATH, group_node.format(group)), f"graph node of group {group}")
    tree = _sidebar_tree(driver)
    for group, tables in GROUPS.items():
        assert tables <= set(tree.get(group, [])), f"group {group} lists {tree.get(group)}, not all of {sorted(tables)}"

    # Materialize all; the toast names the run it launched.
    run_id, status = _materialize_all(driver, dagster_ui)
    assert status == "SUCCESS", f"run {run_id} ended {status}\n{dagster_ui.log_tail()}"
    driver.get(f"{dagster_ui.url}/runs/{run_id}")
    _wait_for_text(driver, r"\bSuccess\b", f"run page of {run_id} to show Success")

    # The lake: the ML table was published by that run.
    ml = DeltaTable(str(dagster_ui.lake / "machine_learning" / "curated"))
    assert ml.history(1)[0]["stedi"]["run_id"] == run_id
    rows = ml.to_pyarrow_table().num_rows
    assert rows > 0

    # The asset's page shows that materialization and its row count...
    driver.get(f"{dagster_ui.url}/assets/machine_learning_curated")
    shown = _wait_for_text(driver, r"Row count\s+([\d,]+)", "the row count of machine_learning_curated")
    assert int(shown.group(1).replace(",", "")) == rows
    driver.get(f"{dagster_ui.url}/assets/machine_learning_curated?view=events")
    _wait_for_text(driver, rf"Materialized in run {run_id[:8]}", f"the materialization of run {run_id}")

    # ...and every blocking check passed.
    driver.get(f"{dagster_ui.url}/assets/machine_learning_curated?view=checks")
    _wait_for_text(driver, rf"Checks \({len(ML_CHECKS)}\)", "the checks tab")
    for check in ML_CHECKS:
        _wait_for_text(driver, rf"{check}\s+Succeeded", f"check {check} to show Succeeded")
        driver.find_element(By.XPATH, f"//*[normalize-space()='{check}']").click()
        passed = rf"(?s){check}\s+Execute\b.*?Evaluation result\s+Passed\b.*?violations\s+0\b"
        _wait_for_text(driver, passed, f"check {check}'s latest evaluation to show Passed, 0 violations")

    # The whole graph, every group expanded, for a person to look at.
    driver.get(f"{dagster_ui.url}/asset-groups")
    _wait(driver, lambda d: d.find_element(By.XPATH, group_node.format("curated")), "the lineage graph")
    driver.find_elements(By.XPATH, "//*[@aria-label='settings']")[-1].click()  # the graph's own settings
    expand_all = (By.XPATH, "//*[@role='menuitem'][contains(., 'Expand all groups')]")
    _wait(driver, expected_conditions.element_to_be_clickable(expand_all), "Expand all groups").click()
    driver.switch_to.active_element.send_keys(Keys.ESCAPE)  # close the menu, it would hide a corner
    asset_node = "//*[local-name()='foreignObject'][not(contains(@class, 'group'))]//*[normalize-space()='{}']"
    for table in ("customer_landing", "customer_trusted", "customer_curated"):  # short names: never truncated
        _wait(driver, lambda d: d.find_element(By.XPATH, asset_node.format(table)), f"graph node of {table}")
    _wait(driver, lambda d: not d.find_elements(By.XPATH, "//*[@role='menu']"), "the settings menu to close")
    screenshot = tmp_path / "lineage.png"
    assert driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
    print(f"lineage screenshot: {screenshot}")


_RUNNING_ANIMATIONS = "return document.getAnimations().filter(a => a.playState === 'running').length"


def _launch_lakehouse_job(dagster_ui: DagsterUI, run_config: dict) -> str:
    """Launch the whole-lakehouse job through the webserver's GraphQL API, as the UI's button does."""
    mutation = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
        __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
    selector = {"repositoryLocationName": "stedi", "repositoryName": "__repository__", "jobName": "stedi_lakehouse"}
    launched = dagster_ui.graphql(mutation, params={"selector": selector, "runConfigData": run_config})["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["runId"]


def test_charts_render_in_the_asset_pages(dagster_ui: DagsterUI, driver, tmp_path: Path):
    """Issue #13: each chart of the landing assets, customer_curated and machine_learning_curated
    opens from its asset page's metadata ([Show Markdown]) and renders as an image of its size.
    The run rebuilds every table (full_refresh.yaml's config): on the lake the first test built,
    a plain run would change nothing and draw no curated chart."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    from stedi_assets_tests.test_charts import EXPECTED

    run_id = _launch_lakehouse_job(dagster_ui, yaml.safe_load((REPO / "full_refresh.yaml").read_text()))
    status = dagster_ui.wait_for_run(run_id, RUN_TIMEOUT)
    assert status == "SUCCESS", f"run {run_id} ended {status}\n{dagster_ui.log_tail()}"

    dialog = "//*[@role='dialog']"
    shots = tmp_path / "charts"
    shots.mkdir()
    for asset, charts in EXPECTED.items():
        driver.get(f"{dagster_ui.url}/assets/{asset}")
        _wait_for_text(driver, r"\bMetadata\b", f"the metadata of {asset}")
        for chart, (width, height) in charts.items():
            show = (By.XPATH, f"//tr[.//*[normalize-space()='{chart}']]//a[contains(., 'Show Markdown')]")
            link = _wait(driver, expected_conditions.presence_of_element_located(show), f"{asset}'s {chart} row")
            driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", link)
            _wait(driver, expected_conditions.element_to_be_clickable(show), f"{asset}'s {chart} link").click()
            image = _wait(driver, lambda d: d.find_element(By.XPATH, f"{dialog}//img"), f"the {chart} image of {asset}")
            natural = _wait(
                driver,
                lambda d: d.execute_script(
                    "const i = arguments[0]; return i.complete && i.naturalWidth > 0 && [i.naturalWidth, i.naturalHeight]",
                    image,
                ),
                f"the {chart} image of {asset} to load",
            )
            assert natural == [width, height], f"{asset} {chart}: {natural}"
            _wait(driver, lambda d: not d.execute_script(_RUNNING_ANIMATIONS), "the dialog to finish fading in")
            screenshot = shots / f"{asset}-{chart}.png"
            assert driver.save_screenshot(str(screenshot)) and screenshot.stat().st_size > 10_000
            close = (By.XPATH, f"{dialog}//button[normalize-space()='Close']")
            _wait(driver, expected_conditions.element_to_be_clickable(close), "the dialog's Close button").click()
            _wait(driver, lambda d: not d.find_elements(By.XPATH, dialog), f"the {chart} dialog to close")
    print(f"chart screenshots: {shots}")


def test_a_failed_audit_shows_its_failed_check_on_the_materialization_it_judged(dagster_ui: DagsterUI, driver, tmp_path: Path):
    """A step trainer reading delivered twice with two distances: the run fails
    `reading_key_unique`. The UI shows the failed check on that run's materialization, whose
    metadata says it was not published, and the published table is the previous one."""
    from selenium.webdriver.common.by import By

    good_run, status = _materialize_all(driver, dagster_ui)
    assert status == "SUCCESS", dagster_ui.log_tail()
    trusted = DeltaTable(str(dagster_ui.lake / "step_trainer" / "trusted"))
    published_version, published_rows = trusted.version(), trusted.to_pyarrow_table()
    reading = published_rows.slice(0, 1).to_pylist()[0]
    (dagster_ui.source / "step_trainer" / "landing" / "late.json").write_text(
        json.dumps({**reading, "distanceFromObject": 9999}) + "\n"
    )

    failed_run, status = _materialize_all(driver, dagster_ui)
    assert status == "FAILURE"
    # The published table is unchanged: same version, same rows.
    after = DeltaTable(str(dagster_ui.lake / "step_trainer" / "trusted"))
    assert after.version() == published_version
    assert after.to_pyarrow_table().equals(published_rows)

    # The asset's latest materialization is the failed run's, and says it was not published.
    driver.get(f"{dagster_ui.url}/assets/step_trainer_trusted?view=events")
    _wait_for_text(driver, rf"Materialized in run {failed_run[:8]}", f"the materialization of run {failed_run}")
    _wait_for_text(driver, r"(?s)published\s+false", "the materialization's metadata: published false")
    _wait_for_text(driver, r"FAILED reading_key_unique \(1\)", "the materialization's audit verdict")

    # Its checks tab shows the failed rule, with the evidence, on that materialization.
    driver.get(f"{dagster_ui.url}/assets/step_trainer_trusted?view=checks")
    _wait_for_text(driver, r"reading_key_unique\s+Failed", "check reading_key_unique to show Failed")
    driver.find_element(By.XPATH, "//*[normalize-space()='reading_key_unique']").click()
    failed = r"(?s)reading_key_unique\s+Execute\b.*?Evaluation result\s+Failed\b.*?violations\s+1\b"
    _wait_for_text(driver, failed, "the failed evaluation with 1 violation")
    # The evaluation the page shows targets the failed run's own materialization.
    checks = dagster_ui.graphql(
        """{ assetNodeOrError(assetKey: {path: ["step_trainer_trusted"]}) { ... on AssetNode {
             assetChecksOrError { ... on AssetChecks { checks { name executionForLatestMaterialization {
               runId status evaluation { targetMaterialization { runId } } } } } } } } }"""
    )["assetNodeOrError"]["assetChecksOrError"]["checks"]
    latest = {c["name"]: c["executionForLatestMaterialization"] for c in checks}["reading_key_unique"]
    assert latest["status"] == "FAILED" and latest["runId"] == failed_run
    assert latest["evaluation"]["targetMaterialization"]["runId"] == failed_run
    screenshot = tmp_path / "failed_audit.png"
    assert driver.save_screenshot(str(screenshot))
    print(f"failed audit screenshot: {screenshot}")


def _shown_row_count(driver, dagster_ui: DagsterUI) -> int | None:
    """The row count machine_learning_curated's asset page shows now (None: none yet)."""
    from selenium.webdriver.common.by import By

    driver.get(f"{dagster_ui.url}/assets/machine_learning_curated")
    try:
        _wait(driver, lambda d: re.search(r"Row count\s+([\d,]+)", _body_text(d)), "a row count", timeout=10)
    except Exception:  # selenium's TimeoutException: no materialization yet
        return None
    return int(re.search(r"Row count\s+([\d,]+)", driver.find_element(By.TAG_NAME, "body").text).group(1).replace(",", ""))


def test_a_new_file_reaches_the_ml_table_in_the_ui_without_a_click(dagster_ui_automated: DagsterUI, driver, tmp_path: Path):
    """Nothing is clicked: the sensors ingest the sample, automation builds every table,
    then a new accelerometer file dropped into the source shows up, within two minutes, as
    a larger row count on the ML table's page."""
    from stedi_assets_tests.test_incremental import new_accelerometer_file

    ui = dagster_ui_automated
    ml = ui.lake / "machine_learning" / "curated" / "_delta_log"
    deadline = time.monotonic() + FIRST_INGEST_TIMEOUT
    while not (ml.is_dir() and any(ml.glob("*.json"))):
        assert time.monotonic() < deadline, f"the sample was not ingested on its own\n{ui.log_tail()}"
        time.sleep(1)
    before = DeltaTable(str(ml.parent)).to_pyarrow_table().num_rows
    shown = None
    while shown != before:
        assert time.monotonic() < deadline, f"the UI never showed {before} rows (last: {shown})"
        shown = _shown_row_count(driver, ui)

    new_accelerometer_file(ui.source)
    arrived = time.monotonic()
    while (shown := _shown_row_count(driver, ui)) is None or shown <= before:
        assert time.monotonic() - arrived < ARRIVAL_TIMEOUT, (
            f"{ARRIVAL_TIMEOUT}s after the file arrived the ML page still shows {shown} rows\n{ui.log_tail()}"
        )
        time.sleep(2)
    print(f"arrival to a larger ML row count in the UI: {time.monotonic() - arrived:.0f} s ({before} -> {shown} rows)")
    assert shown == DeltaTable(str(ml.parent)).to_pyarrow_table().num_rows
    screenshot = tmp_path / "after_arrival.png"
    assert driver.save_screenshot(str(screenshot))
    # The README's UI command prints no Python warning a user cannot act on (Dagster's
    # SupersessionWarning of `dagster dev`, say): its sensors and runs ran under it meanwhile.
    printed = ui.log.read_text(errors="replace")
    assert not re.search(r"\w+Warning\b", printed), re.findall(r".*\w+Warning\b.*", printed)
