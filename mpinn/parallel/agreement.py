"""The agreement step: every rank runs its own checks, then one small collective shares the
verdicts, so every rank raises alike and none is left waiting in a collective.

A rank that raises alone (its data is bad, its memory too small) would leave the others
blocked in their first collective for ever; a rank given other data than the rest would
train a different model, or spin. So each check runs locally, and one ``allgather`` of
(verdict, facts) decides for all: the first failing rank's message, or the ranks whose
facts (shapes, dtypes, a fingerprint) differ from rank 0's, raised on every rank.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mpinn.errors import ConfigError
from mpinn.parallel.comm import Communicator


def agree(comm: Communicator, check: Callable[[], tuple[Any, Any]], what: str = "inputs") -> Any:
    """Run ``check`` on every rank: it returns (result, facts) or raises ConfigError. Raise
    ConfigError on every rank if it raised on any, or if the facts (small, comparable: shapes,
    dtypes, fingerprints) differ between ranks; else return this rank's result."""
    try:
        verdict, (result, facts) = None, check()
    except ConfigError as exc:
        verdict, result, facts = str(exc), None, None
    gathered = comm.allgather_obj((verdict, facts)) if comm.size > 1 else [(verdict, facts)]
    failed = [rank for rank, (message, _) in enumerate(gathered) if message is not None]
    if failed:
        message = gathered[failed[0]][0]
        if len(failed) < comm.size:
            message += f" (on rank(s) {', '.join(map(str, failed))}; the others passed)"
        raise ConfigError(message)
    differing = [rank for rank, (_, theirs) in enumerate(gathered) if theirs != gathered[0][1]]
    if differing:
        ours, theirs = gathered[0][1], gathered[differing[0]][1]
        keys = [k for k in ours if ours.get(k) != theirs.get(k)] if isinstance(ours, dict) else []
        raise ConfigError(f"rank(s) {', '.join(map(str, differing))} were given other {what} than "
                          f"rank 0 ({', '.join(keys) or 'facts'} differ: rank 0 has "
                          f"{_describe(ours, keys)}, rank {differing[0]} has "
                          f"{_describe(theirs, keys)}); every rank must pass the same")
    return result


def on_root(comm: Communicator, check: Callable[[], Any]) -> None:
    """Run ``check`` on rank 0 alone (what only rank 0 writes) and raise its ConfigError on
    every rank."""
    verdict = None
    if comm.is_root:
        try:
            check()
        except ConfigError as exc:
            verdict = str(exc)
    verdict = comm.bcast_obj(verdict)
    if verdict is not None:
        raise ConfigError(verdict)


def _describe(facts: Any, keys: list[str]) -> str:
    if isinstance(facts, dict) and keys:
        return "; ".join(f"{key} {facts.get(key)}" for key in keys)
    return str(facts)
