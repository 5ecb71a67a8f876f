"""The report: report.html and report.md of a small real run, their figures, and a browser.

One small run (digits cut to 200 examples, 3 trials, 1 epoch, 1 finalist x 2 seeds) is shared
by the module. The browser test loads report.html in headless Chromium (Debian's `chromium`);
without it the test is skipped, except on CI (`CI=true`), where `.ci/run` installs it.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import subprocess

import pytest

from attn_search._report_doc import Document
from attn_search.report import write_report
from attn_search.runfolder import REPORT_FILES

FIGURES = [name for name in REPORT_FILES if name.endswith(".png")]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    from attn_search.runner import RunConfig, run_search

    out = tmp_path_factory.mktemp("report") / "run"
    config = RunConfig(
        dataset="digits", limit=200, trials=3, max_epochs=1, finalists=1, repeats=2, quiet=True,
        engine="optuna", out=str(out),
    )  # fmt: skip
    result = run_search(config)
    assert result.status == "complete"
    return out


def _image_sources(html_text: str) -> list[str]:
    return re.findall(r'<img src="([^"]+)"', html_text)


def test_report_html_and_md_show_every_figure(small_run):
    from PIL import Image

    html_text = (small_run / "report.html").read_text()
    md_text = (small_run / "report.md").read_text()
    assert _image_sources(html_text) == FIGURES  # every figure, in the order of REPORT_FILES
    for name in FIGURES:
        assert f"]({name})" in md_text
        with Image.open(small_run / name) as image:
            image.load()  # decodes the whole file
            assert image.format == "PNG" and min(image.size) > 100
    # Self-contained: no script, no stylesheet or image from elsewhere.
    assert "<script" not in html_text
    assert "http://" not in html_text and "https://" not in html_text
    # Each figure has a caption, and the verdict sentences stand beside the forest plot.
    assert html_text.count("<figcaption>") == len(FIGURES)
    verdict = html_text.split("<h2>Verdict</h2>")[1].split("<h2>")[0]
    assert '<div class="side"><figure><img src="report_verdict.png"' in verdict
    assert verdict.count("<li>Finalist 1 (trial #") == 2


def test_report_of_an_unfinished_run_says_what_is_missing(small_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    for name in ("comparison.csv", "finalists.json", "best_model.keras", *REPORT_FILES):
        (run / name).unlink()
    assert write_report(run) == run / "report.md"
    text = (run / "report.md").read_text()
    for sentence in (
        "## Verdict\n\nNo comparison.csv yet (the run has not reached its finalists).\n",
        "## Finalists per seed\n\n"
        "No finalist fit recorded yet (finalists.json is missing or empty).\n",
        "## Learned gamma (best model)\n\nNo best_model.keras yet.\n",
        "## Attention maps (best model)\n\nNo best_model.keras yet.\n",
    ):
        assert sentence in text
    html_text = (run / "report.html").read_text()
    assert '<p class="note">No best_model.keras yet.</p>' in html_text
    # The search's figures are still drawn from leaderboard.csv.
    expected = ["report_families.png", "report_tradeoff.png", "report_history.png"]
    assert _image_sources(html_text)[:3] == expected
    assert all((run / name).is_file() for name in expected)


def test_a_figure_that_fails_becomes_one_sentence(tmp_path):
    def draw(path):
        raise ValueError("no data")

    doc = Document("t")
    assert not doc.drawn_figure(tmp_path / "report_gamma.png", draw, alt="a", caption="c")
    assert doc.to_markdown() == "# t\n\n(figure report_gamma.png skipped: ValueError: no data)\n"


# --------------------------------------------------------------------------------- browser
_PROBE = """<script>
window.__errors = [];
window.addEventListener("error", e => window.__errors.push(
  "load error: " + (e.target && e.target.src ? e.target.src : e.message)), true);
const __consoleError = console.error;
console.error = (...args) => { window.__errors.push("console: " + args.join(" "));
                               __consoleError(...args); };
window.addEventListener("load", () => {
  const pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify({
    images: [...document.images].map(i => [i.getAttribute("src"), i.naturalWidth, i.complete]),
    errors: window.__errors});
  document.body.appendChild(pre);
});
</script>"""


def _chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI") == "true":
        pytest.fail("chromium is not installed; .ci/run installs it (apt-get install chromium)")
    pytest.skip("chromium is not installed (Debian: apt-get install chromium)")


def test_report_html_renders_in_a_browser(small_run, tmp_path):
    browser = _chromium()
    page = small_run / "report.html"
    # The probe page sits beside the report, so relative image links resolve the same way.
    probe = tmp_path / "probe"
    shutil.copytree(small_run, probe)
    text = page.read_text()
    (probe / "report.html").write_text(text.replace("<head>", "<head>\n" + _PROBE, 1))
    done = subprocess.run(
        [
            browser, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run",
            "--enable-logging=stderr", "--v=0", f"--user-data-dir={tmp_path / 'profile'}",
            "--virtual-time-budget=10000", "--dump-dom", (probe / "report.html").as_uri(),
        ],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, re.S)
    assert found, done.stdout[-2000:]
    result = json.loads(html.unescape(found.group(1)))
    assert [src for src, _, _ in result["images"]] == FIGURES
    assert [src for src, width, _ in result["images"] if not width > 0] == []
    assert result["errors"] == []
    console = [line for line in done.stderr.splitlines() if ":CONSOLE(" in line]
    assert console == []
