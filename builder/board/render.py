"""The board as a static site: index.html, one page per cell, board.json, recipes/<cell>.yaml.

`render_site` is pure (path -> text); `write_site` is the only I/O. Every page is self-contained
(inline CSS, inline SVG, one small inline script for the copy button), links are relative, and a
Content-Security-Policy forbids loading anything, so the site opens offline from file:// or from
an unpacked CI artifact exactly as it does from a web server.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import jinja2

from builder.board.chart import history_svg
from builder.board.export import board_json, cell_page, recipe_path, recipe_yaml, to_json
from builder.board.model import CELL_STATES, STATE_TEXT, Board, BoardCell, CellState

TEMPLATES: Final = Path(__file__).parent / "templates"
GLYPHS: Final[Mapping[CellState, str]] = {"known-good": "✓", "smoke-failed": "✗", "untested": "?",
                                          "never-built": "–", "excluded": "⊘"}
# Copies the pull command; falls back to selecting it where the Clipboard API is unavailable
# (file:// in some browsers, headless). No external code, no console errors on refusal.
COPY_SCRIPT: Final = """
(function () {
  function done(status, text) { if (status) { status.textContent = text; } }
  document.querySelectorAll("button.copy").forEach(function (button) {
    button.addEventListener("click", function () {
      var code = document.getElementById(button.getAttribute("data-target"));
      var status = document.getElementById(button.getAttribute("data-status"));
      var text = code.textContent;
      function select() {
        var range = document.createRange(), sel = window.getSelection(), ok = false;
        range.selectNodeContents(code); sel.removeAllRanges(); sel.addRange(range);
        try { ok = document.execCommand("copy"); } catch (e) { ok = false; }
        done(status, ok ? "Copied" : "Selected: press Ctrl+C to copy");
      }
      if (navigator.clipboard && window.isSecureContext) {
        navigator.clipboard.writeText(text).then(function () { done(status, "Copied"); }, select);
      } else { select(); }
    });
  });
})();
"""


def _script_hash(script: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode() + "'"


CSP: Final = (f"default-src 'none'; style-src 'unsafe-inline'; script-src {_script_hash(COPY_SCRIPT)}; "
              "base-uri 'none'; form-action 'none'")


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             trim_blocks=False, lstrip_blocks=False)
    env.globals.update(states=CELL_STATES, state_text=STATE_TEXT, glyphs=GLYPHS, csp=CSP,
                       recipe_path=recipe_path)
    return env


def _arch_spans(board: Board) -> list[tuple[str, int]]:
    spans: list[tuple[str, int]] = []
    for arch, _ in board.columns:
        if spans and spans[-1][0] == arch:
            spans[-1] = (arch, spans[-1][1] + 1)
        else:
            spans.append((arch, 1))
    return spans


def render_index(board: Board, env: jinja2.Environment | None = None) -> str:
    env = env or environment()
    return env.get_template("index.html.j2").render(board=board, counts=board.counts(),
                                                    arch_spans=_arch_spans(board), page=cell_page)


def render_cell(board: Board, cell: BoardCell, env: jinja2.Environment | None = None) -> str:
    env = env or environment()
    return env.get_template("cell.html.j2").render(board=board, cell=cell, kg=cell.known_good,
                                                   chart=history_svg(cell), script=COPY_SCRIPT)


def render_site(board: Board) -> dict[str, str]:
    """Every file of the site: relative path -> text."""
    env = environment()
    files = {"index.html": render_index(board, env), "board.json": to_json(board_json(board))}
    for cell in board.cells:
        files[cell_page(cell.id)] = render_cell(board, cell, env)
        text = recipe_yaml(cell)
        if text is not None:
            files[recipe_path(cell.id)] = text
    return files


def write_site(board: Board, out: Path) -> list[Path]:
    """Write the site under out (created); returns the files written, index.html first. Pages and
    recipes of an earlier board in the same place that this one no longer has are removed."""
    files = render_site(board)
    for folder, pattern in (("cells", "*.html"), ("recipes", "*.yaml")):
        for old in sorted((out / folder).glob(pattern)) if (out / folder).is_dir() else []:
            if f"{folder}/{old.name}" not in files:
                old.unlink()
    written = []
    for rel, text in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
        written.append(path)
    return written
