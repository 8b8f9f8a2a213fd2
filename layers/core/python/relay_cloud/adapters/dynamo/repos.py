"""DynamoDB repository of the repositories users add (docs/design/repositories.md).

Everything lives in the user's partition: the repo items (``REPO#<repo_id>``), one guard per GitHub
repository id (``REPOGH#<github_id>``) and the ``repositories`` usage counter. Adding and removing are
single transactions over all three, so the plan limit and the uniqueness hold under concurrency.
"""

from __future__ import annotations

from relay_cloud.adapters.dynamo import keys, usage
from relay_cloud.adapters.dynamo.errors import translated
from relay_cloud.adapters.dynamo.models import RepoGuardItem, RepoItem
from relay_cloud.adapters.dynamo.transactions import commit
from relay_cloud.domain.errors import Conflict, NotFound
from relay_cloud.domain.plans import LimitReached
from relay_cloud.domain.repos import RESOURCE, Repo, RepoExists

TRANSACTION_ATTEMPTS = 6  # concurrent adds conflict on the one counter (TransactionConflict): retried
# Positions in the add transaction (puts, then updates) and the remove transaction (deletes, then updates).
_REPO, _GUARD, _COUNTER = 0, 1, 2


def _repo(item: RepoItem) -> Repo:
    return Repo(
        repo_id=item.repo_id, user_id=item.user_id, github_id=int(item.github_id), full_name=item.full_name,
        name=item.name, owner=item.owner, private=bool(item.private), default_branch=item.default_branch,
        html_url=item.html_url, added_at=int(item.added_at), attached_workspace_id=item.attached_workspace_id,
    )


def _commit(build) -> set[int]:
    return commit(build, attempts=TRANSACTION_ATTEMPTS, busy_message="Too many changes at once, please retry")


class RepoRepository:
    def list(self, user_id: str) -> list[Repo]:
        """The user's repositories, oldest first (by name within a second)."""
        with translated("query"):
            items = RepoItem.query(keys.user_pk(user_id), RepoItem.sk.startswith(keys.REPO_PREFIX),
                                   consistent_read=True)
            repos = [_repo(item) for item in items]
        return sorted(repos, key=lambda r: (r.added_at, r.full_name.lower(), r.repo_id))

    def get(self, user_id: str, repo_id: str) -> Repo | None:
        with translated("get"):
            try:
                item = RepoItem.get(keys.user_pk(user_id), keys.repo_sk(repo_id), consistent_read=True)
            except RepoItem.DoesNotExist:
                return None
        return _repo(item)

    def repo_id_for_github(self, user_id: str, github_id: int) -> str | None:
        with translated("get"):
            try:
                guard = RepoGuardItem.get(keys.user_pk(user_id), keys.repo_guard_sk(github_id), consistent_read=True)
            except RepoGuardItem.DoesNotExist:
                return None
        return guard.repo_id

    def add(self, repo: Repo, *, limit: int | None) -> None:
        """Store the repo, its guard and one more on the user's counter, in one transaction.
        ``RepoExists`` when the user has this GitHub repository already; ``LimitReached`` when the counter
        is at ``limit``."""
        item = RepoItem(
            keys.user_pk(repo.user_id), keys.repo_sk(repo.repo_id),
            repo_id=repo.repo_id, user_id=repo.user_id, github_id=repo.github_id, full_name=repo.full_name,
            name=repo.name, owner=repo.owner, private=repo.private, default_branch=repo.default_branch,
            html_url=repo.html_url, added_at=repo.added_at,
        )
        guard = RepoGuardItem(keys.user_pk(repo.user_id), keys.repo_guard_sk(repo.github_id), repo_id=repo.repo_id)

        def build(tx):
            tx.save(item, condition=RepoItem.pk.does_not_exist())
            tx.save(guard, condition=RepoGuardItem.pk.does_not_exist())
            usage.reserve(tx, repo.user_id, RESOURCE, limit)

        failed = _commit(build)
        if _GUARD in failed:
            raise RepoExists(self.repo_id_for_github(repo.user_id, repo.github_id))
        if _COUNTER in failed:
            raise LimitReached(RESOURCE, limit)
        if failed:  # the repo id itself was taken: 96 random bits, never in practice
            raise Conflict("Please retry", code="REPO_ID_TAKEN")

    def remove(self, user_id: str, repo_id: str) -> None:
        """Delete the repo, its guard and one from the counter, in one transaction. ``NotFound`` when the
        user has no such repo; ``Conflict REPO_IN_USE`` when a workspace has it attached."""
        current = self.get(user_id, repo_id)
        if current is None:
            raise NotFound("No such repository", code="REPO_NOT_FOUND")

        def build(tx):
            tx.delete(RepoItem(keys.user_pk(user_id), keys.repo_sk(repo_id)),
                      condition=RepoItem.pk.exists() & (RepoItem.github_id == current.github_id)
                      & RepoItem.attached_workspace_id.does_not_exist())
            tx.delete(RepoGuardItem(keys.user_pk(user_id), keys.repo_guard_sk(current.github_id)))
            usage.release(tx, user_id, RESOURCE)

        if _REPO in _commit(build):
            # Removed or attached meanwhile: say which.
            again = self.get(user_id, repo_id)
            if again is None:
                raise NotFound("No such repository", code="REPO_NOT_FOUND")
            raise Conflict("The repository is attached to a workspace; detach it first", code="REPO_IN_USE",
                           workspace_id=again.attached_workspace_id)
