"""The static site, read as files (no browser): links, offline-ness, board.json, recipes."""

import base64
import hashlib
import json
import re
from html.parser import HTMLParser

import pytest

from builder.board.chart import history_svg, nice_max
from builder.board.export import recipe, recipe_yaml
from builder.board.render import COPY_SCRIPT, CSP, render_site, write_site
from tests.unit.board import synthetic as syn


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.refs, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        for name, value in attrs:
            if name in ("href", "src", "action", "srcset", "poster", "data") and value:
                self.refs.append(value)


def _parse(text):
    parser = _Refs()
    parser.feed(text)
    return parser


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    write_site(syn.board(), out)
    return out


def test_one_page_per_cell_board_json_and_recipes_for_known_good(site):
    board = syn.board()
    for cell in board.cells:
        assert (site / "cells" / f"{cell.id}.html").is_file()
        assert (site / "recipes" / f"{cell.id}.yaml").is_file() == (cell.known_good is not None)
    data = json.loads((site / "board.json").read_text())
    assert {c["id"]: c["state"] for c in data["cells"]} == {c.id: c.state for c in board.cells}
    kg = next(c for c in data["cells"] if c["id"] == "vllm-0.20.2-cu130-sm_121a")
    assert kg["pull"] == f"docker pull {syn.REPO}@{syn.digest('a4')}"
    assert len(kg["history"]) == 4 and len(kg["history"][2]["regressions"]) == 4


def test_every_link_is_relative_and_resolves(site):
    for page in site.rglob("*.html"):
        for ref in _parse(page.read_text()).refs:
            assert not re.match(r"^[a-z][a-z0-9+.-]*:|^//", ref, re.IGNORECASE), f"{page.name}: absolute {ref}"
            assert (page.parent / ref.split("#")[0]).resolve().is_file(), f"{page.name}: broken {ref}"


def test_no_external_resource_and_a_csp_that_forbids_them(site):
    for page in site.rglob("*.html"):
        text = page.read_text()
        tags = _parse(text).tags
        assert [a["content"] for t, a in tags if t == "meta" and a.get("http-equiv") == "Content-Security-Policy"] \
            == [CSP]
        assert not [t for t, a in tags if t in ("img", "iframe", "link", "object", "embed") or
                    (t == "script" and "src" in a)], page.name
        assert "@import" not in text and "url(" not in text
    assert "default-src 'none'" in CSP
    digest = base64.b64encode(hashlib.sha256(COPY_SCRIPT.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in CSP  # the one inline script, allowed by its hash


def test_copy_button_only_where_there_is_a_digest(site):
    board = syn.board()
    for cell in board.cells:
        text = (site / "cells" / f"{cell.id}.html").read_text()
        assert ('<code id="pull">docker pull ' in text) == (cell.known_good is not None)
        assert ("<script>" in text) == (cell.known_good is not None)


def test_chart_one_circle_per_promotion_per_level_and_titled_regressions():
    cell = {c.id: c for c in syn.board().cells}["vllm-0.20.2-cu130-sm_121a"]
    svg = history_svg(cell)
    tags = _parse(svg).tags
    for c in cell.concurrencies:
        circles = [a for t, a in tags if t == "circle" and a.get("data-concurrency") == str(c)]
        assert [int(a["data-promotion"]) for a in circles] == [i for i, p in enumerate(cell.history)
                                                               if p.rate(c) is not None]
    assert len([a for t, a in tags if t == "polyline"]) == len(cell.concurrencies)
    marks = [a for t, a in tags if t == "path" and a.get("class") == "regression"]
    assert len(marks) == 4 and svg.count("<title>Regression at 2026-11-20") == 4
    assert history_svg({c.id: c for c in syn.board().cells}["vllm-0.16.0-cu129-sm_121a"]) == ""
    assert [nice_max(v) for v in (0, 7, 190, 1119 * 1.05)] == [1.0, 10, 200, 2000]


def test_recipe_pins_the_digest_and_carries_the_measured_numbers():
    cells = {c.id: c for c in syn.board().cells}
    data = recipe(cells["vllm-0.33.0-cu130-sm_121a"])  # its last smoke failed: numbers of the known-good
    assert data["container"] == f"{syn.REPO}@{syn.digest('c1')}"
    assert data["metadata"]["measured"]["decode_tps"][0]["decode_tps_p50"] == syn.GOOD[1]
    assert data["command"] == ("--model {model} --served-model-name {served_name} --host 0.0.0.0 --port 8000 "
                               "--max-model-len 4096 --gpu-memory-utilization 0.5")  # the engine module's
    assert data["args"][:2] == ["--model", "{model}"] and data["defaults"]["port"] == 8000
    assert recipe(cells["vllm-0.20.2-cu128-sm_120"]) is None


def test_recipe_yaml_reads_back():
    yaml = pytest.importorskip("yaml")
    cell = {c.id: c for c in syn.board().cells}["vllm-0.32.0-cpu"]
    data = recipe(cell)
    assert yaml.safe_load(recipe_yaml(cell)) == json.loads(json.dumps(data))
    assert recipe_yaml(cell).startswith("# vllm-0.32.0-cpu: known-good image pinned by digest")


def test_rendering_is_deterministic():
    assert render_site(syn.board()) == render_site(syn.board())


def test_text_not_colour_alone(site):
    index = (site / "index.html").read_text()
    for state in ("known-good", "smoke failed", "built, untested", "never built", "excluded"):
        assert state in index
    assert "not in the matrix" in index  # empty slots say so to screen readers


def test_a_cell_page_shows_the_backends_that_ran(site):
    page = (site / "cells" / "vllm-0.20.2-cu130-sm_121a.html").read_text()
    assert re.search(r'<dd id="backends"><span class="status-pass">pass</span> attention FLASH_ATTN; moe TritonExperts</dd>',
                     page), page[page.find("backends"):][:300]


def test_the_chart_escapes_record_text_through_the_template_engine():
    """A record's promoted_at reaches the chart's labels and titles: the template escapes it (autoescape), the
    chart's code escapes nothing by hand."""
    import dataclasses
    cell = {c.id: c for c in syn.board().cells}["vllm-0.20.2-cu130-sm_121a"]
    hostile = dataclasses.replace(cell.history[0], promoted_at='<script>alert(1)</script>"')
    svg = history_svg(dataclasses.replace(cell, history=(hostile, *cell.history[1:])))
    assert "<script>" not in svg and svg.count("&lt;script&gt;al") == 2  # the axis label and the point title
    from builder.board import chart
    assert "escape" not in vars(chart)  # no hand-made escaping left to forget
