"""bases.lock: format, errors with file:line, merging, and the one-line stale messages."""

from __future__ import annotations

import pytest

from builder.bases.lock import LOCAL, LockEntry, load_lock, merge, parse_lock, render_lock, stale
from builder.errors import ConfigError

A = "sha256:" + "a" * 64
B = "sha256:" + "b" * 64


def test_round_trip_sorted_with_comment_header(tmp_path):
    entries = {"z/b:1": LockEntry("z/b:1", A, "2026-12-01"), "a/x:2": LockEntry("a/x:2", LOCAL, "2026-11-30")}
    text = render_lock(entries)
    assert text.startswith("# ") and text.endswith("\n")
    assert [l for l in text.splitlines() if not l.startswith("#")] == ["a/x:2 local 2026-11-30", f"z/b:1 {A} 2026-12-01"]
    assert parse_lock(text) == entries
    (tmp_path / "bases.lock").write_text(text)
    assert load_lock(tmp_path / "bases.lock") == entries
    assert load_lock(tmp_path / "missing.lock") == {}


@pytest.mark.parametrize("line,needle", [("a:1 sha256:12 2026-01-01", "neither"), (f"a:1 {A}", "got 2 field"),
                                         (f"a:1 {A} yesterday", "YYYY-MM-DD")])
def test_errors_name_file_and_line(line, needle):
    with pytest.raises(ConfigError, match=needle) as err:
        parse_lock(f"# header\n\n{line}\n", "m/bases.lock")
    assert str(err.value).startswith("m/bases.lock:3: ")


def test_twice_locked_is_an_error():
    with pytest.raises(ConfigError, match="locked twice"):
        parse_lock(f"a:1 {A} 2026-01-01\na:1 {B} 2026-01-02\n")


def test_merge_keeps_the_date_of_unmoved_bases_and_the_kept_entries():
    old = {"a:1": LockEntry("a:1", A, "2026-01-01"), "b:1": LockEntry("b:1", A, "2026-01-01"),
           "other:1": LockEntry("other:1", A, "2026-01-01"), "gone:1": LockEntry("gone:1", A, "2026-01-01")}
    new = merge(old, {"a:1": A, "b:1": B}, "2026-12-01", keep={"other:1"})
    assert new == {"a:1": LockEntry("a:1", A, "2026-01-01"), "b:1": LockEntry("b:1", B, "2026-12-01"),
                   "other:1": LockEntry("other:1", A, "2026-01-01")}


def test_stale_is_one_line_per_base_naming_it():
    lock = {"a:1": LockEntry("a:1", A, "2026-01-01"), "b:1": LockEntry("b:1", A, "2026-01-01"),
            "c:1": LockEntry("c:1", LOCAL, "2026-01-01"), "old:1": LockEntry("old:1", A, "2026-01-01")}
    lines = stale(lock, {"a:1": A, "b:1": B, "c:1": LOCAL, "new:1": ""}, "bases.lock")
    assert len(lines) == 3 and all("\n" not in line for line in lines)
    assert lines[0].startswith("bases.lock: b:1 moved: locked at ") and B in lines[0]
    assert "new:1 is used by the matrix but not locked" in lines[1]
    assert "old:1 is locked but no cell uses it" in lines[2]


def test_stale_gone_upstream_and_local_changes():
    lock = {"a:1": LockEntry("a:1", A, "2026-01-01"), "c:1": LockEntry("c:1", LOCAL, "2026-01-01")}
    gone, local = stale(lock, {"a:1": None, "c:1": A}, "l")
    assert gone.startswith("l: a:1 (locked at") and "mirror" in gone
    assert "c:1 is locked as local but is now in its registry" in local
    assert stale(lock, {"a:1": A, "c:1": LOCAL}, "l") == []


@pytest.mark.parametrize("reference, date, message", [
    ("../x", "2026-12-01", "'../x' is not an image reference"),
    ("Nvidia/CUDA:1", "2026-12-01", "is not an image reference"),
    ("a\x00b", "2026-12-01", "is not an image reference"),
    ("nvidia/cuda:13.0", "2026-13-45", "date '2026-13-45' is not a YYYY-MM-DD date"),
])
def test_a_lock_line_that_is_not_a_reference_or_a_date_is_refused_at_its_line(reference, date, message):
    """Checked where the lock is read (exit 2, file:line), not when the reference reaches a registry (exit 1)."""
    text = f"nvidia/cuda:13.0.2-devel-ubuntu24.04 sha256:{'a' * 64} 2026-12-01\n{reference} sha256:{'b' * 64} {date}\n"
    with pytest.raises(ConfigError) as caught:
        parse_lock(text, "bases.lock")
    assert str(caught.value).startswith("bases.lock:2: ") and message in str(caught.value)
