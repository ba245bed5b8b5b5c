"""The study report opened in a real headless Chromium: every image loads, every table renders.

A copy of ``report.html`` gets a small script that, once the page has loaded, writes what the
browser saw (each image's natural size, each table's row count) into the DOM; Chromium's
``--dump-dom`` prints the DOM and the test reads it back. The report itself has no script.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from engine import ExecutorSpec, StudyRun, run_study
from engine.demo import make_demo_study

_BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
_PROBE = """<script>
window.addEventListener("load", function () {
  var images = Array.prototype.map.call(document.images, function (im) {
    return {alt: im.alt, complete: im.complete, width: im.naturalWidth, height: im.naturalHeight};
  });
  var tables = Array.prototype.map.call(document.querySelectorAll("table"), function (t) {
    return {rows: t.querySelectorAll("tbody tr").length, height: t.getBoundingClientRect().height};
  });
  var out = document.createElement("pre");
  out.id = "phenoflow-probe";
  out.textContent = JSON.stringify({images: images, tables: tables});
  document.body.appendChild(out);
});
</script>"""


def _chromium() -> str:
    for name in _BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    reason = ("no Chromium found (" + ", ".join(_BROWSERS) + "); install it with "
              "`apt-get install -y chromium`")
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the browser test must run)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> StudyRun:
    root = tmp_path_factory.mktemp("browser")
    study = make_demo_study(root / "data", n_events=3000, n_genes=400)
    return run_study(study.study, out_dir=root / "out", executor=ExecutorSpec(kind="inprocess"))


def _render(browser: str, page: Path, profile: Path, *, width: int = 1280) -> dict:
    result = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
         "--no-first-run", "--disable-extensions", "--disable-background-networking",
         f"--user-data-dir={profile}", "--virtual-time-budget=5000",
         f"--window-size={width},900", "--hide-scrollbars", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=180, check=False,
    )
    found = re.search(r'<pre id="phenoflow-probe">(.*?)</pre>', result.stdout, re.S)
    assert found, f"no probe output (exit {result.returncode}): {result.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def test_report_renders_in_chromium(report: StudyRun, tmp_path: Path) -> None:
    browser = _chromium()
    text = report.report.read_text(encoding="utf-8")
    assert "<script" not in text  # the report needs no script; the probe is added to a copy
    page = tmp_path / "report_probe.html"
    page.write_text(text.replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    seen = _render(browser, page, tmp_path / "profile")

    n_images = text.count("<img ")
    assert n_images == len(report.figures) > 0
    assert len(seen["images"]) == n_images
    for image in seen["images"]:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image

    expected_rows = [block.count("<tr>") - 1 for block in text.split("<table>")[1:]]
    assert [t["rows"] for t in seen["tables"]] == expected_rows
    assert all(rows > 0 for rows in expected_rows)
    assert all(t["height"] > 0 for t in seen["tables"])
    clinical = report.table("clinical_tests")
    assert len(clinical) in expected_rows


def test_report_is_self_contained(report: StudyRun) -> None:
    text = report.report.read_text(encoding="utf-8")
    sources = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert sources and all(s.startswith(("data:image/png;base64,", "#")) for s in sources)
    assert "@import" not in text and "url(" not in text


# Where each P-value header cell is, against the viewport and the table's scrolling box.
_LAYOUT = """<script>
window.addEventListener("load", function () {
  var tables = Array.prototype.map.call(document.querySelectorAll("table"), function (t) {
    var box = t.parentElement.getBoundingClientRect();
    var heads = Array.prototype.map.call(t.querySelectorAll("thead th"), function (th) {
      var r = th.getBoundingClientRect();
      return {text: th.textContent, p: th.classList.contains("p"), left: r.left,
              right: r.right};
    });
    return {box: {left: box.left, right: box.right}, scroll: t.parentElement.scrollWidth,
            client: t.parentElement.clientWidth, heads: heads};
  });
  var out = document.createElement("pre");
  out.id = "phenoflow-probe";
  out.textContent = JSON.stringify({width: window.innerWidth, tables: tables});
  document.body.appendChild(out);
});
</script>"""

# A4 landscape less the report's 12 mm print margins, in CSS pixels (96 per inch)
_PRINT_WIDTH = round((297 - 2 * 12) / 25.4 * 96)


def _layout(browser: str, text: str, folder: Path, *, width: int, print_css: bool) -> dict:
    if print_css:  # lay the page out with its print rules, at the printed page's width
        assert text.count("@media print{") == 1
        text = text.replace("@media print{", "@media all{")
    page = folder / f"layout_{width}.html"
    page.write_text(text.replace("</body>", _LAYOUT + "</body>"), encoding="utf-8")
    return _render(browser, page, folder / f"profile_{width}", width=width)


def test_p_values_are_visible_on_screen_and_in_print(report: StudyRun, tmp_path: Path) -> None:
    browser = _chromium()
    text = report.report.read_text(encoding="utf-8")
    n_p_tables = sum('class="n p"' in block.split("</thead>")[0]
                     for block in text.split("<table>")[1:])
    assert n_p_tables >= 4  # clinical, populations, gene sets, correlations, ...

    screen = _layout(browser, text, tmp_path, width=1280, print_css=False)
    seen = 0
    for table in screen["tables"]:
        for head in table["heads"]:
            if not head["p"]:
                continue
            seen += 1  # within the window and the table's visible box: no scrolling needed
            assert head["right"] <= min(screen["width"], table["box"]["right"]) + 1, head
            assert head["left"] >= table["box"]["left"] - 1, head
    assert seen >= 2 * n_p_tables - 1  # P and padj of every table (DE top genes: pvalue, padj)

    printed = _layout(browser, text, tmp_path, width=_PRINT_WIDTH, print_css=True)
    for table in printed["tables"]:
        assert table["scroll"] <= table["client"] + 1, table  # no column cut off on paper
        for head in table["heads"]:
            assert head["right"] <= printed["width"] + 1, head
