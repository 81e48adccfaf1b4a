"""Secrets Manager adapter: a secret's versions, always read and moved by explicit stage.

Every value read is registered with `recovery.redact` (and the ``password`` inside a JSON secret),
so no caller can put it in a journal, message or exception by accident. Errors name the secret
and the stage, never a value.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from recovery import redact
from recovery.aws import aws_error, error_code

CURRENT, PENDING, PREVIOUS = "AWSCURRENT", "AWSPENDING", "AWSPREVIOUS"


def stages_first(versions: dict[str, list[str]], stage: str) -> str | None:
    ids = versions.get(stage) or []
    return ids[0] if ids else None


class SecretStages:
    def __init__(self, sm: Any, arn: str) -> None:
        self.sm = sm
        self.arn = arn

    @property
    def short(self) -> str:
        return self.arn.split(":secret:")[-1]

    def versions(self) -> dict[str, list[str]]:
        """stage -> version ids holding it."""
        try:
            resp = self.sm.list_secret_version_ids(SecretId=self.arn, IncludeDeprecated=False)
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"listing the versions of secret {self.short}") from None
        out: dict[str, list[str]] = {}
        for v in resp.get("Versions", []):
            for stage in v.get("VersionStages", []):
                out.setdefault(stage, []).append(v["VersionId"])
        return out

    def version(self, stage: str) -> str | None:
        return stages_first(self.versions(), stage)

    def value(self, stage: str) -> str | None:
        """The secret string at ``stage``; None when a stage other than AWSCURRENT is not attached."""
        try:
            resp = self.sm.get_secret_value(SecretId=self.arn, VersionStage=stage)
        except Exception as exc:  # noqa: BLE001
            if error_code(exc) == "ResourceNotFoundException" and stage != CURRENT:
                return None
            raise aws_error(exc, f"reading secret {self.short} ({stage})") from None
        text = str(resp.get("SecretString") or "")
        redact.register(text)
        try:
            doc = json.loads(text)
            if isinstance(doc, dict) and isinstance(doc.get("password"), str):
                redact.register(doc["password"])
        except ValueError:
            pass
        return text

    def put_pending(self, text: str) -> str:
        """Store ``text`` as AWSPENDING under a new version id (returned)."""
        version_id = str(uuid.uuid4())
        try:
            self.sm.put_secret_value(SecretId=self.arn, ClientRequestToken=version_id, SecretString=text,
                                     VersionStages=[PENDING])
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"storing the new value of secret {self.short} as {PENDING}") from None
        return version_id

    def promote(self, version_id: str) -> None:
        """AWSCURRENT -> ``version_id`` (Secrets Manager moves AWSPREVIOUS), then drop its AWSPENDING."""
        current = self.version(CURRENT)
        try:
            if current != version_id:
                kwargs = {"RemoveFromVersionId": current} if current else {}
                self.sm.update_secret_version_stage(SecretId=self.arn, VersionStage=CURRENT,
                                                    MoveToVersionId=version_id, **kwargs)
            if version_id in (self.versions().get(PENDING) or []):
                self.sm.update_secret_version_stage(SecretId=self.arn, VersionStage=PENDING,
                                                    RemoveFromVersionId=version_id)
        except Exception as exc:  # noqa: BLE001
            raise aws_error(exc, f"promoting {PENDING} to {CURRENT} on secret {self.short}") from None
