import json
import stat

import pytest

from builder.errors import InputError, StepFailed
from builder.watch.notify import parse_hook, send


def test_a_file_gets_one_json_line_per_verdict(tmp_path):
    hook = parse_hook(str(tmp_path / "verdicts.jsonl"))
    assert hook.kind == "file"
    send(hook, {"verdict": "found", "n": 1})
    send(hook, {"verdict": "regressed", "n": 2})
    lines = (tmp_path / "verdicts.jsonl").read_text().splitlines()
    assert [json.loads(line)["verdict"] for line in lines] == ["found", "regressed"]


def test_a_command_gets_the_json_on_stdin_and_no_shell_runs(tmp_path):
    script = tmp_path / "hook.py"
    out = tmp_path / "got.json"
    script.write_text(f"#!/usr/bin/env python3\nimport sys\nopen({str(out)!r}, 'w').write(repr(sys.argv[1:]) + sys.stdin.read())\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    marker = tmp_path / "pwned"
    hook = parse_hook(f"{script} 'a b' $(touch {marker}) ;")
    assert hook.kind == "command"
    send(hook, {"verdict": "passed"})
    argv, _, doc = out.read_text().partition("]")
    assert argv + "]" == repr(["a b", "$(touch", f"{marker})", ";"])  # words, not shell syntax
    assert json.loads(doc) == {"verdict": "passed"}
    assert not marker.exists()


def test_a_failing_command_is_a_step_failure(tmp_path):
    with pytest.raises(StepFailed, match="exited 1"):
        send(parse_hook("false"), {"verdict": "passed"})


def test_a_target_that_is_neither_is_refused(tmp_path):
    with pytest.raises(InputError, match="--notify"):
        parse_hook(str(tmp_path / "no" / "such" / "dir.jsonl"))
    with pytest.raises(InputError, match="--notify"):
        parse_hook("'unbalanced")
