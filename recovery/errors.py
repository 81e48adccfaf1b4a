"""The one place that maps what went wrong to an exit code.

Every failure an operator can act on is a RecoveryError subclass. Its message is one
line that names the problem and, after " - ", what to do about it. The CLI prints that
line and exits with the class's code; tracebacks appear only with --debug. Codes are
distinct per class so that cron, systemd and CI can tell failures apart.
"""

from __future__ import annotations

import re
from typing import Any


class RecoveryError(Exception):
    """Base class. Subclasses set exit_code; never reuse a code."""

    exit_code = 1

    def __init__(self, problem: str, fix: str | None = None) -> None:
        self.problem = problem.strip().replace("\n", " ")
        self.fix = fix.strip().replace("\n", " ") if fix else None
        super().__init__(self.line())

    def line(self) -> str:
        return f"{self.problem} - {self.fix}" if self.fix else self.problem


# A command a hint quotes, `recovery ...` in backticks; `recovery local ...` takes no --stack.
_QUOTED_COMMAND = re.compile(r"`(recovery (?!local\b)[^`]*)`")


def with_stack(line: str, stack: str | None) -> str:
    """`line` with --stack STACK added to every `recovery ...` command it quotes that lacks one.

    Hints are written where the stack is often not known (a catalogue lookup, a lock), yet a
    command copied from a hint without --stack fails or, worse, picks RECOVERY_STACK's stack.
    The CLI knows the stack in use, so it completes the hint once here for every command.
    """
    if not stack:
        return line
    return _QUOTED_COMMAND.sub(lambda m: m.group(0) if "--stack" in m.group(1)
                               else f"`{m.group(1).rstrip()} --stack {stack}`", line)


def one_line(exc: BaseException) -> str:
    """Any exception as one line: a RecoveryError's own, else its class and message."""
    if isinstance(exc, RecoveryError):
        return exc.line()
    text = str(exc).strip().replace("\n", " ") or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}" if not isinstance(exc, OSError) else text


class StackOutputsError(RecoveryError):
    """Unknown stack, or its outputs are missing, malformed, mistyped or secret-only."""

    exit_code = 3


class InputError(RecoveryError):
    """A bad argument or unreadable local input (path, data dir, time, peer list)."""

    exit_code = 4


class AwsAccessError(RecoveryError):
    """AWS refused or could not find what the stack says exists (bucket, key, permission)."""

    exit_code = 5


class DatabaseError(RecoveryError):
    """PostgreSQL unreachable, refused the credentials, or a SQL step failed."""

    exit_code = 6


class LockHeldError(RecoveryError):
    """Another run holds the lock for this job."""

    exit_code = 7


class IntegrityError(RecoveryError):
    """A backup or restored copy does not match its manifest (checksum, rows, structure)."""

    exit_code = 8


class RefusedError(RecoveryError):
    """The operator declined, no TTY without --yes, or a preflight check said no."""

    exit_code = 9


class StepFailedError(RecoveryError):
    """A runbook step failed; the message names the step.

    ``step`` is the step's name and ``journal`` the run's journal (a recovery.engine.journal.Journal;
    typed Any so that this module stays below the engine), which ``--json`` prints on failure."""

    exit_code = 10

    def __init__(self, problem: str, fix: str | None = None, *, step: str | None = None,
                 journal: Any = None) -> None:
        super().__init__(problem, fix)
        self.step = step
        self.journal = journal


class DeadlineError(RecoveryError):
    """Something did not happen before its deadline (sync, healing, a waiter)."""

    exit_code = 11


class NodeApiError(RecoveryError):
    """The XAI node API is unreachable or answered something unusable."""

    exit_code = 12


class VerificationFailed(RecoveryError):
    """One or more verification checks failed (details were printed per check)."""

    exit_code = 13


class BackupFailedError(RecoveryError):
    """A backup stream failed part-way (pg_dump, tar or the upload); nothing was catalogued."""

    exit_code = 14


class ServiceControlError(RecoveryError):
    """A dependent service (xai-node, xai-explorer...) failed to stop or start in time."""

    exit_code = 15


class ChainDataError(RecoveryError):
    """A chain data directory or chain backup without a chain.db that passes PRAGMA integrity_check:
    it could not restore a node, so it is never catalogued (backup) or passed (verify, failover)."""

    exit_code = 17


class IncompleteRestoreError(RecoveryError):
    """Every step ran, but something could not be put back (a role, a database setting...): the
    run says what, and exits non-zero so that no script reads it as a complete restore."""

    exit_code = 18


class LocalEnvError(RecoveryError):
    """The local environment is not running, half up, a component failed to start, or the program
    declares something it cannot create."""

    exit_code = 16


# ---- issue 7: rotation and containment (codes 41-46) -------------------------------------------


class CacheError(RecoveryError):
    """The cache (Redis/ElastiCache) is unreachable or answered something unusable."""

    exit_code = 41


class UnknownInstanceError(RecoveryError):
    """The EC2 instance named for containment does not exist in the stack's region."""

    exit_code = 42


class UnknownUserError(RecoveryError):
    """An IAM user or role named for containment does not exist (or is not the stack's)."""

    exit_code = 43


class WrongVpcError(RecoveryError):
    """The instance is not in the stack's VPC: containment refuses to touch another network."""

    exit_code = 44


class TrailMissingError(RecoveryError):
    """The stack's CloudTrail trail does not exist, so forensic logging cannot be ensured."""

    exit_code = 45


class EvidenceMissingError(RecoveryError):
    """An incident's evidence (record, image, snapshots) is missing: termination is refused."""

    exit_code = 46


# ---- issue 5: drills (codes 20-21) -------------------------------------------------------------------


class NotLocalStackError(RefusedError):
    """`recovery drill full` injects real damage: it runs only on the local environment's stacks."""

    exit_code = 20


class DrillFailedError(RecoveryError):
    """A drill ran and wrote its record and report, but a scenario failed or missed an objective."""

    exit_code = 21


# ---- issue 5: metrics and status (code 29) --------------------------------------------------------


class StatusRedError(RecoveryError):
    """`recovery status` found at least one red line (node, database, backup age, health, replication)."""

    exit_code = 29



# ---- issue 6: failover, failback and partition (codes 31-34) ---------------------------------------


class NotDrStackError(RefusedError):
    """`recovery failover` was aimed at a stack whose role does not fit (failover: a DR stack;
    failback: a primary stack)."""

    exit_code = 31


class SiteNotReadyError(RefusedError):
    """Preflight: the site to promote is not ready (not in the global cluster, not available,
    node unreachable, no chain data or backup); nothing was changed."""

    exit_code = 32


class ReplicationLagError(RefusedError):
    """Preflight: replication lag is over the limit, so a failover would lose more than allowed."""

    exit_code = 33


class PartitionNotHealedError(DeadlineError):
    """`recovery partition wait|rejoin`: the node did not regain peers and sync before the timeout."""

    exit_code = 34


# ---- issue 15: cache recovery (codes 51-53) ----------------------------------------------------------


class CachePrimaryHealthyError(RefusedError):
    """`cache failover`: the primary answers; there is nothing to fail over."""

    exit_code = 51


class CacheNoReplicaError(RefusedError):
    """`cache failover`: no replica answers, so none can be promoted (every node lost: `cache recreate`)."""

    exit_code = 52


class CacheGroupAliveError(RefusedError):
    """`cache recreate`: a node of the group still answers; recreating would drop a working cache."""

    exit_code = 53
