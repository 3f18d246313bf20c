"""`builder watch`'s verdict line: the culprit is named where the verdict is printed, not only in the record."""

from builder.cli.watch import _culprit_words

SHA = "3c1b2a9f8e7d6c5b4a3928171615141312111009"


def test_the_verdict_line_names_the_confirmed_culprit_or_why_there_is_none():
    found = {"exact": True, "first_bad": {"sha": SHA, "subject": "Use the fast argmax in the sampler (#3131)"}}
    assert _culprit_words(found, {"status": "confirmed"}) == \
        "; culprit 3c1b2a9f8e7d Use the fast argmax in the sampler (#3131) (confirmed)"
    assert _culprit_words(found, {"status": "not confirmed", "why": "the effect did not reproduce"}) == \
        "; culprit 3c1b2a9f8e7d Use the fast argmax in the sampler (#3131) (not confirmed: the effect did not reproduce)"
    assert _culprit_words({"exact": False, "suspects": [SHA]}, {"status": "not confirmed"}).startswith(
        "; culprit suspects, not one commit")
    assert _culprit_words({"error": "cannot measure the endpoints: the runner is too busy"}, {"status": "not run"}) == \
        "; no culprit: cannot measure the endpoints: the runner is too busy"
    assert _culprit_words({}, {}) == ""  # not bisected (passed, or no --repo)
