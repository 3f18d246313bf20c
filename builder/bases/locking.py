"""`builder bases lock`, `--check` and `mirror`: what they do, without the printing. Side effects
through a BaseResolver (Engine, registries) and oci/copy.py."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from builder.bases.choice import mirror_repository
from builder.bases.lock import LOCAL, LockEntry, merge, render_lock, stale
from builder.bases.resolve import BaseResolver
from builder.errors import InputError, StepFailed
from builder.oci.copy import CopyStats, copy_image
from builder.oci.reference import parse_reference
from builder.util import confined, write_replacing


@dataclass(frozen=True)
class LockChange:
    reference: str
    digest: str
    before: str | None  # the digest locked before, None for a new entry

    def describe(self) -> str:
        what = "local image (identity read at build time)" if self.digest == LOCAL else self.digest
        if self.before is None:
            return f"{self.reference} {what} (new)"
        if self.before == self.digest:
            return f"{self.reference} {what} (unchanged)"
        return f"{self.reference} {what} (was {self.before})"


def lock_bases(resolver: BaseResolver, references: list[str], every: set[str], lock: dict[str, LockEntry],
               path: Path, today: str, root: Path | None = None) -> list[LockChange]:
    """Resolve `references` and write the lock; entries of other bases the matrix still uses
    (`every`) are kept, entries no cell uses are dropped. `root`: the matrix's directory, which the
    lock must not leave (a symlinked lock or directory is refused before anything is resolved)."""
    root = root if root is not None else path.parent
    confined(path, root)
    resolved = {}
    for reference in references:
        digest = resolver.lookup(reference)
        if digest is None:
            raise StepFailed(resolver.missing_message(reference))
        resolved[reference] = digest
    new = merge(lock, resolved, today, keep=set(every) - set(references))
    write_replacing(path, render_lock(new), root)
    return [LockChange(r, resolved[r], lock[r].digest if r in lock else None) for r in sorted(resolved)]


def check_lock(resolver: BaseResolver, references: list[str], every: set[str], lock: dict[str, LockEntry],
               path: Path, mirror: str | None) -> list[str]:
    """One line per stale base. A `local` entry is not looked up (its id is per machine); a base
    gone upstream is fine while the mirror holds its locked digest."""
    now: dict[str, str | None] = {}
    for reference in references:
        entry = lock.get(reference)
        if entry is None:
            now[reference] = ""  # reported as not locked; no lookup needed
        elif entry.local:
            now[reference] = LOCAL
        else:
            now[reference] = resolver.lookup(reference, engine=False)
            if now[reference] is None and mirror and mirrored(resolver, mirror, reference, entry.digest):
                now[reference] = entry.digest
    unused = {ref: entry for ref, entry in lock.items() if ref not in every}
    relevant = {ref: entry for ref, entry in lock.items() if ref in now}
    return stale({**relevant, **unused}, now, str(path))


def mirrored(resolver: BaseResolver, mirror: str, reference: str, digest: str) -> bool:
    host, _, repo = mirror_repository(mirror, reference).partition("/")
    found = resolver.client(host).head_manifest(repo, digest)
    return found is not None and found.digest == digest


def mirror_bases(resolver: BaseResolver, references: list[str], lock: dict[str, LockEntry], to: str,
                 path: Path, say) -> list[str]:
    """Copy each locked registry base to `to` by digest (every platform), tagged as upstream.
    Returns the mirror references written."""
    done = []
    for reference in references:
        entry = lock.get(reference)
        if entry is None and not parse_reference(reference).digest:
            raise InputError(f"{path}: {reference} is not locked; run `builder bases lock` before mirroring")
        if entry is not None and entry.local:
            say(f"{reference}: local image, not in a registry: skipped (mirror it by pushing it yourself)")
            continue
        ref = parse_reference(reference)
        digest = ref.digest or (entry.digest if entry else "")  # unlocked means pinned (checked above)
        host, _, repo = mirror_repository(to, reference).partition("/")
        target = resolver.client(host)
        tags = (ref.tag,) if ref.tag else ()
        if mirrored(resolver, to, reference, digest):
            for tag in tags:  # the tag may be missing (mirrored under another reference)
                body, media_type, _ = target.get_manifest(repo, digest)
                target.put_manifest(repo, tag, body, media_type)
            say(f"{reference}: already in {host}/{repo}@{digest}")
        else:
            stats = copy_image(resolver.client(ref.api_host), ref.repository, digest, target, repo, tags, CopyStats())
            say(f"{reference}: copied to {host}/{repo}@{digest}: {stats.describe()}")
        found = target.head_manifest(repo, tags[0] if tags else digest)
        if found is None or found.digest != digest:
            raise StepFailed(f"{host}/{repo}: the mirror does not show {digest} after the copy")
        done.append(f"{host}/{repo}" + (f":{ref.tag}" if ref.tag else "") + f"@{digest}")
    return done
