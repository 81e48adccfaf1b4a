"""Tell someone: DR events to the stack's SNS topic and its webhooks (infra/notifications.py).

An `Event` (kind, severity, stack, component, summary, details, dedup key) is scrubbed of every
secret value the process has read (recovery/redact.py), then

- published to the stack's DR-events topic (the `notifications` output), with `kind`, `severity`,
  `component` and `stack` as message attributes (the subscriptions' filter policies read
  `component`): a text body for e-mail and SMS, the event as JSON for http(s) and email-json;
- posted to every webhook in the shape its on-call tool accepts: a Slack-compatible message
  (`{"text", "blocks"}`) or a PagerDuty Events API v2 event (`routing_key`, `event_action`
  trigger/resolve, `dedup_key`, `payload{summary, source, severity, component, group, class,
  custom_details}`). A webhook that names a secret reads its URL and routing key there.

Delivery never fails a runbook and never blocks one for long: each destination gets `ATTEMPTS`
tries with exponential backoff and a short timeout; a failed delivery is logged (a warning) and
reported in the result. Events about a lasting condition (a stale backup, broken replication) are
sent `once`: their dedup key is kept in a small state file (next to the journals,
`<journal dir>/notifications/<stack>.json`) until `resolve()` clears it, so one stale backup pages
once, not on every `status` run, and its resolution closes the PagerDuty incident.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

from recovery import redact
from recovery.aws import client
from recovery.engine.journal import default_journal_dir

log = logging.getLogger(__name__)

# kind -> default severity (PagerDuty's four levels).
KINDS = {
    "backup-failed": "error",
    "verify-failed": "error",
    "backup-stale": "warning",
    "replication-failed": "critical",
    "drill-failed": "error",
    "drill-summary": "error",
    "failover-started": "critical",
    "failover-finished": "info",
    "containment": "critical",
    "rotation-failed": "error",
}
SEVERITIES = ("critical", "error", "warning", "info")
PAGERDUTY_EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
ATTEMPTS = 3
BACKOFF_SECONDS = 0.5  # 0.5 s, then 1 s: a destination that is down costs a runbook ~2 s plus timeouts
TIMEOUT_SECONDS = 5.0
SUBJECT_LIMIT = 100  # SNS refuses a longer Subject


@dataclass(frozen=True)
class Event:
    kind: str
    stack: str
    component: str
    summary: str
    severity: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    dedup_key: str = ""
    action: str = "trigger"  # or "resolve"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}")
        object.__setattr__(self, "severity", self.severity or KINDS[self.kind])
        object.__setattr__(self, "dedup_key", self.dedup_key or f"xai-dr/{self.stack}/{self.kind}/{self.component}")

    def clean(self) -> "Event":
        """The same event with every secret value the process knows masked."""
        return Event(**{**asdict(self), "summary": redact.scrub(self.summary), "details": _scrub(self.details)})


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        return redact.scrub(value)
    if isinstance(value, dict):
        return {redact.scrub(str(k)): _scrub(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value


# ------------------------------------------------------------------------------------ formats

def title(e: Event) -> str:
    verb = "resolved" if e.action == "resolve" else e.severity.upper()
    return f"[XAI DR] {verb}: {e.stack}/{e.component}: {e.summary}"


def sns_message(e: Event) -> dict[str, Any]:
    """Publish arguments: a per-protocol message (text for people, JSON for machines) and attributes."""
    text = "\n".join([title(e), "", f"kind: {e.kind}", f"severity: {e.severity}", f"dedup key: {e.dedup_key}",
                      *[f"{k}: {v}" for k, v in sorted(e.details.items())]])
    doc = json.dumps(asdict(e), sort_keys=True, default=str)
    attrs = {k: {"DataType": "String", "StringValue": str(v)}
             for k, v in (("kind", e.kind), ("severity", e.severity), ("component", e.component), ("stack", e.stack))}
    return {"Subject": title(e)[:SUBJECT_LIMIT], "MessageStructure": "json", "MessageAttributes": attrs,
            "Message": json.dumps({"default": text, "email": text, "sms": title(e)[:140],
                                   "http": doc, "https": doc, "email-json": doc})}


def slack_message(e: Event) -> dict[str, Any]:
    fields = [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in
              (("stack", e.stack), ("component", e.component), ("kind", e.kind), ("severity", e.severity))]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title(e)[:150]}},
        {"type": "section", "text": {"type": "mrkdwn", "text": e.summary[:3000]}, "fields": fields},
    ]
    if e.details:
        lines = "\n".join(f"• {k}: {v}" for k, v in sorted(e.details.items()))
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": lines[:3000]}]})
    return {"text": title(e), "blocks": blocks}


def pagerduty_event(e: Event, routing_key: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"routing_key": routing_key, "event_action": e.action, "dedup_key": e.dedup_key,
                           "client": "xai-recovery"}
    if e.action == "trigger":
        doc["payload"] = {"summary": title(e)[:1024], "source": e.stack, "severity": e.severity,
                          "component": e.component, "group": e.stack, "class": e.kind, "custom_details": e.details}
    return doc


# ----------------------------------------------------------------------------------- delivery

def _with_retries(what: str, send: Any) -> str | None:
    """None once `send()` succeeds, else the last error (after ATTEMPTS tries with backoff)."""
    error = "not attempted"
    for attempt in range(ATTEMPTS):
        if attempt:
            time.sleep(BACKOFF_SECONDS * 2 ** (attempt - 1))
        try:
            send()
            return None
        except Exception as exc:  # noqa: BLE001 - a delivery failure is reported, never raised
            error = redact.scrub(f"{type(exc).__name__}: {exc}")[:300]
            log.debug("delivering to %s failed (attempt %d of %d): %s", what, attempt + 1, ATTEMPTS, error)
    log.warning("could not deliver a DR event to %s after %d attempts: %s", what, ATTEMPTS, error)
    return error


def _post(url: str, doc: dict[str, Any]) -> None:
    req = urllib.request.Request(url, data=json.dumps(doc).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "User-Agent": "xai-recovery"})
    with urllib.request.urlopen(req, timeout=TIMEOUT_SECONDS) as resp:  # noqa: S310 - http(s) from the stack
        resp.read()


def _webhook_target(hook: dict[str, Any], secrets: Any) -> tuple[str, str]:
    """(url, routing key) of a webhook; a secret one is read from Secrets Manager and registered."""
    if hook.get("url"):
        return str(hook["url"]), ""
    value = secrets.get_secret_value(SecretId=hook["secret_arn"], VersionStage="AWSCURRENT")["SecretString"]
    redact.register(value)
    doc = json.loads(value)
    url = str(doc.get("url") or (PAGERDUTY_EVENTS_URL if hook["format"] == "pagerduty" else ""))
    key = str(doc.get("routing_key", ""))
    redact.register(url)
    redact.register(key)
    if not url:
        raise ValueError(f"secret {hook['secret_name']} has no url")
    return url, key


def _deliver(outputs: Any, e: Event) -> dict[str, str | None]:
    """Every destination at once (one slow or dead one delays the caller by its own retries only).
    Clients are made here, in the caller's thread: boto3 sessions are not thread-safe."""
    cfg = getattr(outputs, "notifications", None) or {}
    sends: dict[str, Any] = {}
    topic = cfg.get("topic_arn")
    if topic and e.action == "trigger":  # a resolution is for the pager; people were told once
        sns = client("sns", topic.split(":")[3], attempts=2)
        sends["sns"] = (f"topic {topic}", lambda: sns.publish(TopicArn=topic, **sns_message(e)))
    hooks = [h for h in cfg.get("webhooks", []) if e.action == "trigger" or h.get("format") == "pagerduty"]
    secrets = client("secretsmanager", outputs.region, attempts=2) if any(h.get("secret_arn") for h in hooks) else None
    for hook in hooks:
        def send(hook: dict[str, Any] = hook) -> None:
            url, key = _webhook_target(hook, secrets)
            _post(url, slack_message(e) if hook["format"] == "slack" else pagerduty_event(e, key))
        sends[f"webhook:{hook.get('name')}"] = (f"webhook {hook.get('name')}", send)
    if not sends:
        return {}
    with ThreadPoolExecutor(max_workers=len(sends)) as pool:
        futures = {name: pool.submit(_with_retries, what, fn) for name, (what, fn) in sends.items()}
        return {name: f.result() for name, f in futures.items()}


# ------------------------------------------------------------------------------ dedup state

def _state_file(stack: str) -> Path:
    return default_journal_dir() / "notifications" / f"{stack.replace('/', '_')}.json"


def _open_keys(stack: str) -> dict[str, Any]:
    try:
        return dict(json.loads(_state_file(stack).read_text()))
    except (OSError, ValueError):
        return {}


def _save_keys(stack: str, keys: dict[str, Any]) -> None:
    path = _state_file(stack)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(keys, sort_keys=True, indent=1))
        tmp.replace(path)
    except OSError as exc:
        log.warning("could not record sent DR events in %s: %s", path, exc)


# ------------------------------------------------------------------------------------- public

def announce(outputs: Any, kind: str, component: str, summary: str, *, details: dict[str, Any] | None = None,
             severity: str = "", dedup_key: str = "", once: bool = False) -> dict[str, Any]:
    """Send one event to everyone the stack names. `once`: not again while its dedup key is open.
    Never raises; returns {"event", "sent": {destination: error or None}, "suppressed"}."""
    try:
        e = Event(kind=kind, stack=outputs.stack, component=component, summary=summary, severity=severity,
                  details=dict(details or {}), dedup_key=dedup_key).clean()
        if once:
            keys = _open_keys(e.stack)
            if e.dedup_key in keys:
                return {"event": asdict(e), "sent": {}, "suppressed": True}
        sent = _deliver(outputs, e)
        if once and any(err is None for err in sent.values()):
            keys[e.dedup_key] = {"at": time.time(), "kind": kind, "summary": e.summary}
            _save_keys(e.stack, keys)
        return {"event": asdict(e), "sent": sent, "suppressed": False}
    except Exception as exc:  # noqa: BLE001 - telling someone must never fail the runbook
        log.warning("could not announce a %s event: %s", kind, redact.scrub(str(exc)))
        return {"event": None, "sent": {}, "suppressed": False, "error": redact.scrub(str(exc))}


def resolve(outputs: Any, kind: str, component: str, *, dedup_key: str = "") -> bool:
    """The condition behind a `once` event is over: forget its key and resolve the pager's incident.
    Nothing is sent when the key was not open. Never raises."""
    try:
        e = Event(kind=kind, stack=outputs.stack, component=component, summary="resolved", dedup_key=dedup_key,
                  action="resolve")
        keys = _open_keys(e.stack)
        if keys.pop(e.dedup_key, None) is None:
            return False
        _save_keys(e.stack, keys)
        _deliver(outputs, e)
        return True
    except Exception as exc:  # noqa: BLE001
        log.warning("could not resolve a %s event: %s", kind, redact.scrub(str(exc)))
        return False


def failed(outputs: Any, kind: str, component: str, exc: BaseException, *, details: dict[str, Any] | None = None,
           dedup_key: str = "", severity: str = "") -> dict[str, Any]:
    """`announce` for a failure: the error's one line (RecoveryError.line()) is the summary."""
    line = exc.line() if hasattr(exc, "line") else f"{type(exc).__name__}: {exc}"
    return announce(outputs, kind, component, f"failed: {line}", details=details, dedup_key=dedup_key,
                    severity=severity)


@contextmanager
def on_failure(outputs: Any, kind: str, component: str, severity: str = "", **details: Any) -> Iterator[None]:
    """Announce a `kind` event when the block fails (a RecoveryError or anything else), then re-raise."""
    try:
        yield
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        failed(outputs, kind, component, exc, details=details, severity=severity)
        raise
