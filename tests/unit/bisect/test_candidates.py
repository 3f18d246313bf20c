from __future__ import annotations

from pathlib import Path

import pytest

from builder.bisect.candidates import GitRepo, list_candidates
from builder.bisect.errors import BisectInputError, GitError
from builder.bisect.model import FileChange
from tests.unit.bisect.lab import RULES, NEEDS_BUILD, History, commit, git


def test_lists_every_commit_in_order_with_subject_pr_and_files(history: History) -> None:
    cands = list_candidates(GitRepo(path=history.repo), history.shas[0], "main", rules=RULES)
    assert [c.sha for c in cands] == history.shas and [c.index for c in cands] == list(range(20))
    assert cands[0].files == () and cands[0].pr is None
    assert cands[3].subject == "[Core] Change module 3 (#1003)" and cands[3].pr == 1003
    assert {f.path for f in cands[3].files} == {"vllm/mod_3.py", "docs/index.md"}
    assert cands[11].subject.startswith("[Perf] Reorder the step loop") and cands[11].pr == 1011


def test_python_only_classification(history: History) -> None:
    cands = list_candidates(GitRepo(path=history.repo), history.shas[0], history.shas[-1], rules=RULES)
    assert {c.index for c in cands[1:] if c.classification == "needs-build"} == NEEDS_BUILD
    assert cands[5].reason == "csrc/kernel.cu matches csrc/**"
    assert cands[3].classification == "python-only"  # vllm/*.py + docs: overlayable


def test_paths_filter_keeps_the_endpoints(history: History) -> None:
    repo = GitRepo(path=history.repo)
    cands = list_candidates(repo, history.shas[0], history.shas[-1], paths=("csrc/**",), rules=RULES)
    assert [c.sha for c in cands] == [history.shas[0], history.shas[5], history.shas[14], history.shas[-1]]
    engine = list_candidates(repo, history.shas[0], history.shas[-1], paths=("vllm/engine.py", "*.cu"), rules=RULES)
    assert [c.sha for c in engine][1:-1] == [history.shas[5], history.shas[11], history.shas[14]]
    globbed = list_candidates(repo, history.shas[0], history.shas[-1], paths=("vllm/mod_1?.py",), rules=RULES)
    assert [c.index for c in globbed] == list(range(len(globbed))) and len(globbed) == 2 + 9  # 10..18, 19


def test_first_parent_sees_a_merge_as_one_candidate(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    base = commit(repo, "base", {"vllm/a.py": "A = 0\n"})
    git(repo, "checkout", "-q", "-b", "topic")
    side = [commit(repo, "side 1", {"vllm/b.py": "B = 1\n"}), commit(repo, "side 2", {"vllm/b.py": "B = 2\n"})]
    git(repo, "checkout", "-q", "main")
    main1 = commit(repo, "main 1 (#7)", {"vllm/a.py": "A = 1\n"})
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge pull request #42 from x/topic", "topic")
    merge = git(repo, "rev-parse", "HEAD").strip()
    cands = list_candidates(GitRepo(path=repo), base, "main", rules=RULES)
    assert [c.sha for c in cands] == [base, main1, merge]
    assert cands[2].pr == 42 and {f.path for f in cands[2].files} == {"vllm/b.py"}
    every = list_candidates(GitRepo(path=repo), base, "main", first_parent=False, rules=RULES)
    assert set(side) < {c.sha for c in every} and every[-1].sha == merge


def test_deletes_and_renames(tmp_path: Path) -> None:
    repo = tmp_path / "r"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    base = commit(repo, "base", {"vllm/a.py": "A = 0\n" * 20})
    git(repo, "mv", "vllm/a.py", "vllm/b.py")
    commit(repo, "rename", {})
    changes = set(GitRepo(path=repo).diff(base, "HEAD"))
    assert changes == {FileChange(path="vllm/a.py", status="D"), FileChange(path="vllm/b.py", status="A")}


def test_a_bad_ref_is_one_line_naming_the_ref(history: History) -> None:
    with pytest.raises(GitError) as info:
        list_candidates(GitRepo(path=history.repo), "v9.9.9-nope", "main", rules=RULES)
    assert "'v9.9.9-nope'" in str(info.value) and "\n" not in str(info.value) and info.value.exit_code == 2
    with pytest.raises(GitError, match="'--help'"):
        GitRepo(path=history.repo).resolve("--help")


def test_good_must_be_an_ancestor_of_bad(history: History) -> None:
    with pytest.raises(GitError, match="is not an ancestor"):
        list_candidates(GitRepo(path=history.repo), history.shas[9], history.shas[3], rules=RULES)
    with pytest.raises(BisectInputError, match="same commit"):
        list_candidates(GitRepo(path=history.repo), "main", history.shas[-1], rules=RULES)


def test_not_a_repository(tmp_path: Path) -> None:
    with pytest.raises(GitError) as info:
        GitRepo(path=tmp_path).resolve("HEAD")
    assert "\n" not in str(info.value)
