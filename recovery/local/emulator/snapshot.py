"""Capture the in-process emulator's whole state, and put it back later.

Why: every test starts from the program's resources freshly deployed into an empty emulator
(recovery/local/deploy.py replays the program: ~90 API calls, 4-6 s here). What that replay
creates is the same every time for the same arguments, so a process captures it once and later
tests get it back in 0.2-0.6 s (the reset included). The capture is of moto's own backends (every account and region a
service was used in, plus the service-wide maps such as S3's bucket-name registry) and of the
extensions' records (CloudTrail events of the deploy, cached auth tokens); hooks, probes and
configuration are not state of the emulated account and stay as they are.

A captured state is kept serialised: ``restore`` builds fresh objects from it each time, so
nothing a test changes leaks into the next one. Backends pickle (fast); the few that hold
something pickle refuses (KMS keys, a lambda in SSM) are deep-copied instead.
"""

from __future__ import annotations

import copy
import copyreg
import pickle
from dataclasses import dataclass, fields
from typing import Any

from recovery.local.emulator.records import LOCK, RECORDS

# What BackendDict.__init__ sets; anything else on a BackendDict is service state (S3's bucket_accounts).
_BACKEND_DICT_OWN = {"backend", "service_name", "_use_boto3_regions", "_additional_regions", "_id"}


@dataclass(frozen=True)
class _Frozen:
    """A value kept pickled, or (when pickle refuses it) as a private deep copy."""

    pickled: bytes | None
    copied: Any = None

    @classmethod
    def of(cls, value: Any) -> "_Frozen":
        try:
            return cls(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))
        except (TypeError, AttributeError, pickle.PicklingError):
            return cls(None, copy.deepcopy(value))

    def thaw(self) -> Any:
        return pickle.loads(self.pickled) if self.pickled is not None else copy.deepcopy(self.copied)


@dataclass(frozen=True)
class Snapshot:
    backends: tuple[tuple[Any, _Frozen, dict[str, _Frozen]], ...]  # (BackendDict, its extras, account -> backend)
    records: _Frozen


def _parameter_dict(account_id: str, region_name: str) -> Any:
    from moto.ssm.models import ParameterDict

    return ParameterDict(account_id, region_name)


def _register_reducers() -> None:
    # SSM's ParameterDict is a defaultdict whose __init__ takes (account, region): the default
    # reduction calls it with the default factory alone and fails in copy and pickle alike.
    from moto.ssm.models import ParameterDict

    copyreg.pickle(ParameterDict, lambda d: (_parameter_dict, (d.account_id, d.region_name),
                                             dict(vars(d)), None, iter(d.items())))


def capture() -> Snapshot:
    """The emulator's state now (call it with no request in flight)."""
    from moto.core.base_backend import BackendDict, backend_lock

    _register_reducers()
    with backend_lock, LOCK:
        backends = tuple(
            (bd, _Frozen.of({k: v for k, v in vars(bd).items() if k not in _BACKEND_DICT_OWN}),
             {account: _Frozen.of(asb) for account, asb in bd.items()})
            for bd in BackendDict._instances
        )
        records = _Frozen.of({f.name: getattr(RECORDS, f.name) for f in fields(RECORDS)})
    return Snapshot(backends, records)


def restore(snapshot: Snapshot) -> None:
    """Make the emulator's state the captured one. Expects a reset emulator (POST /moto-api/reset),
    which has already disposed of the previous state's objects (S3's temporary files)."""
    from moto.core.base_backend import BackendDict, backend_lock

    with backend_lock, LOCK:
        for bd, extras, accounts in snapshot.backends:
            vars(bd).update(extras.thaw())
            for account, frozen in accounts.items():
                dict.__setitem__(bd, account, frozen.thaw())
            if bd not in BackendDict._instances:
                BackendDict._instances.append(bd)
        for name, value in snapshot.records.thaw().items():
            held = getattr(RECORDS, name)  # in place: the extensions hold these very containers
            held.clear()
            held.extend(value) if isinstance(held, list) else held.update(value)
