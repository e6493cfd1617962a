"""The report as a browser shows it: headless Chromium loads it with no broken image and no script error,
and its screenshot is a picture, not a blank page.

Chromium is Debian's ``chromium`` package (``make`` installs it when it is
missing, as root). Without it these tests fail, saying how to install it: a
report nobody has seen rendered is not a tested report.
"""

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from bayesmatrix.analysis.report import Figure, Section, build_report, render_html
from bayesmatrix.data.llmlog import write_log
from bayesmatrix.inference.simulate import simulate_icl

INSTALL_HINT = "install it with: apt-get install -y chromium (as root; `make` does it when setting up .venv)"

# Collects script errors and console.error calls from the first moment, then, after the page has loaded,
# writes what it found into the page for --dump-dom to carry out.
_WATCH = """<script>
window.__problems = [];
window.addEventListener("error", function (event) {
  var target = event.target && event.target.tagName ? event.target.tagName + " " + (event.target.alt || "") : "";
  window.__problems.push("error: " + (event.message || ("failed to load " + target)));
}, true);
window.addEventListener("unhandledrejection", function (event) { window.__problems.push("rejection: " + event.reason); });
(function () {
  var original = console.error;
  console.error = function () {
    window.__problems.push("console.error: " + Array.prototype.join.call(arguments, " "));
    return original.apply(console, arguments);
  };
})();
</script>"""
_REPORT = """<script>
// A truncated PNG still decodes, its missing rows left transparent; the report's figures are opaque.
function lastRowPainted(image) {
  if (!(image.naturalWidth > 0)) { return false; }
  var canvas = document.createElement("canvas");
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  var context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  var row = context.getImageData(0, image.naturalHeight - 1, image.naturalWidth, 1).data;
  for (var i = 3; i < row.length; i += 4) { if (row[i] > 0) { return true; } }
  return false;
}
window.addEventListener("load", function () {
  // synchronous, so the result is in the page before --dump-dom reads it (drawImage decodes in place)
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (image) {
    return !(image.complete && image.naturalWidth > 0) || !lastRowPainted(image);
  }).map(function (image) { return image.alt || image.src.slice(0, 40); });
  var out = document.createElement("pre");
  out.id = "render-check";
  out.textContent = JSON.stringify({images: images.length, broken: broken, problems: window.__problems,
                                    widths: images.map(function (image) { return image.naturalWidth; })});
  document.body.appendChild(out);
});
</script>"""
_CHECK = re.compile(r'<pre id="render-check">(.*?)</pre>', re.S)


def chromium() -> str:
    """The Chromium executable, or a failure saying how to install it."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail(f"headless Chromium is needed to render the report and was not found on PATH; {INSTALL_HINT}")


def _chromium_run(profile: Path, *arguments: str) -> subprocess.CompletedProcess:
    command = [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               f"--user-data-dir={profile}", *arguments]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def render_check(report: Path, work: Path) -> dict:
    """Load a copy of ``report`` in headless Chromium with the watching scripts injected, and return what
    they saw: ``images`` (how many), ``broken`` (their alt texts), ``problems`` (script and console errors)."""
    text = report.read_text(encoding="utf-8")
    assert "<head>" in text or '<meta charset="utf-8">' in text
    watched = text.replace('<meta charset="utf-8">', '<meta charset="utf-8">' + _WATCH, 1).replace(
        "</body>", _REPORT + "</body>", 1)
    copy = work / f"watched-{report.name}"
    copy.write_text(watched, encoding="utf-8")
    completed = _chromium_run(work / "profile", "--virtual-time-budget=10000", "--dump-dom", copy.resolve().as_uri())
    found = _CHECK.search(completed.stdout)
    assert found, f"Chromium printed no render check (exit {completed.returncode}): {completed.stderr[-2000:]}"
    return json.loads(html.unescape(found.group(1)))


def screenshot(report: Path, work: Path, size: tuple[int, int] = (1200, 2400)) -> np.ndarray:
    """A screenshot of ``report`` in headless Chromium, as an RGB(A) array."""
    import matplotlib.image

    shot = work / f"{report.stem}.png"
    completed = _chromium_run(work / "profile", f"--screenshot={shot}", f"--window-size={size[0]},{size[1]}",
                              report.resolve().as_uri())
    assert shot.is_file(), f"Chromium wrote no screenshot (exit {completed.returncode}): {completed.stderr[-2000:]}"
    return matplotlib.image.imread(shot)


def assert_not_blank(pixels: np.ndarray) -> None:
    """A page with text and figures: many distinct colours, and far from one flat colour."""
    rgb = pixels[..., :3]
    assert rgb.shape[0] > 100 and rgb.shape[1] > 100
    assert float(rgb.std()) > 0.05, "the screenshot is (nearly) one flat colour"
    dark = (rgb.mean(axis=-1) < 0.5).mean()
    assert 0.001 < dark < 0.9, f"{dark:.1%} of the screenshot is dark: blank or black page"
    assert len(np.unique((rgb.reshape(-1, 3) * 255).astype(np.uint8), axis=0)) > 50


def _png(seed: int = 0) -> bytes:
    import io

    from bayesmatrix.analysis.plots.backend import pyplot

    plt = pyplot()
    fig, ax = plt.subplots(figsize=(4, 2.5), layout="constrained")
    ax.plot(np.random.default_rng(seed).normal(size=50).cumsum())
    ax.set_title("a figure")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=60)
    plt.close(fig)
    return buffer.getvalue()


def test_render_check_catches_a_broken_image_and_a_script_error(tmp_path):
    """The check itself can fail: a truncated PNG, bytes that are no image and a throwing script are reported."""
    good = Figure("good", _png())
    truncated = Figure("truncated", _png()[:200])
    garbage = Figure("not a PNG", b"these bytes are no image")
    page = render_html("broken on purpose", [Section("figures", "<p>figures</p>", [good, truncated, garbage])])
    page = page.replace("</body>", "<script>console.error('from the page'); undefinedFunction();</script></body>")
    report = tmp_path / "broken.html"
    report.write_text(page, encoding="utf-8")
    seen = render_check(report, tmp_path)
    assert seen["images"] == 3
    assert seen["broken"] == ["truncated", "not a PNG"]
    assert any("from the page" in problem for problem in seen["problems"])
    assert any("undefinedFunction" in problem for problem in seen["problems"])


def test_a_rendered_page_of_figures(tmp_path):
    """render_html's page with figures: every image decodes at its own width, no error, a non-blank screenshot."""
    figures = [Figure(f"figure {k}", _png(k), "a caption") for k in range(3)]
    report = tmp_path / "page.html"
    report.write_text(render_html("three figures", [Section("figures", "<p>text</p>", figures)]), encoding="utf-8")
    seen = render_check(report, tmp_path)
    assert (seen["images"], seen["broken"], seen["problems"]) == (3, [], [])
    assert seen["widths"] == [240, 240, 240]  # 4 inches at 60 dpi, drawn at the PNG's own size
    assert_not_blank(screenshot(report, tmp_path, (800, 900)))


@pytest.mark.slow
def test_report_renders_in_chromium(tmp_path):
    """A whole report (a log with word columns and the diagnostics of a run fitted to it) renders with
    every image loaded, no console error, and a screenshot that is a picture."""
    from bayesmatrix.analysis.plots import run_figures
    from bayesmatrix.inference.fit import FitOptions, fit

    chromium()  # fail before minutes of fitting when the browser is missing
    simulated = simulate_icl(10, 6, np.array([2.0, 1.0, 1.0]), decay=0.8, temperature=1.2, tau=40.0, seed=5)
    # columns that are words with their tokens' leading space, as a labels task logs them
    log = write_log(simulated.assign_coords(col=[" north", " south", " east", "<other>"]), tmp_path / "words.nc")
    options = FitOptions(model="icl", num_samples=30, num_warmup=30, num_chains=2, seed=1, progress_bar=False)
    run = fit(log, options, tmp_path / "icl-nuts", figures=run_figures).path
    report = build_report([run], tmp_path / "report.html", [log], num_draws=30).path
    seen = render_check(report, tmp_path)
    assert seen["broken"] == [] and seen["problems"] == [], seen
    # the run's trace, rank and posterior; the log's instrumented LLM, predictive, KL and entropy, excess, and PPC
    assert seen["images"] == 3 + 5
    assert all(width > 100 for width in seen["widths"])
    assert_not_blank(screenshot(report, tmp_path))

