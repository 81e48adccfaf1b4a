"""The request: the facts of one moto request (service, operation, region, account, parameters,
and the access key and session token its credential names) that the principal, the action
tables, the records and the errors read."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import parse_qs, urlparse

from recovery.local.iam.facts import _Check, _Principal

_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/\d{8}/([^/]+)/([^/]+)/")
_SCOPE_TO_PREFIX = {"monitoring": "cloudwatch"}  # credential scope -> IAM prefix, where they differ


class _Call:
    """The facts of one request that the mapping and the errors need."""

    def __init__(self, response: Any, moto_resource: str) -> None:
        self.response = response
        self.moto_resource = moto_resource
        self.query = {k: v[0] for k, v in parse_qs(urlparse(response.uri).query, keep_blank_values=True).items()}
        self.key_id, scope_region, scope_service = self._credential()
        self.service = _SCOPE_TO_PREFIX.get(scope_service or "", scope_service or response.service_name)
        self.region = scope_region or getattr(response, "region", None) or "us-east-1"
        self.account = response.current_account
        self.json_protocol = "json" in response.headers.get("Content-Type", "")
        self.operation = "" if self.service == "s3" else response._get_action()
        self.secure = response.normalized_request.scheme == "https"
        self.caller: _Principal | None = None

    def _credential(self) -> tuple[str | None, str | None, str | None]:
        headers = self.response.headers
        auth = headers.get("Authorization", "")
        match = _CREDENTIAL.search(auth) or _CREDENTIAL.search("Credential=" + self.query.get("X-Amz-Credential", ""))
        if match:
            return match.group(1), match.group(2), match.group(3)
        if auth.startswith("AWS "):  # SigV2
            return auth[4:].split(":")[0], None, None
        return self.query.get("AWSAccessKeyId"), None, None

    @property
    def token(self) -> str | None:
        # SigV2 presigned URLs spell it x-amz-security-token, SigV4 ones X-Amz-Security-Token.
        in_query = next((v for k, v in self.query.items() if k.lower() == "x-amz-security-token"), None)
        return self.response.headers.get("X-Amz-Security-Token") or in_query

    @property
    def params(self) -> dict[str, Any]:
        """Request parameters: the JSON body (json protocols) or the query/form fields."""
        if not hasattr(self, "_params"):
            body = self.response.body
            cbor = "cbor" in self.response.headers.get("Content-Type", "")
            if cbor and getattr(self.response, "automated_parameter_parsing", False):
                # CloudWatch speaks CBOR (smithy-rpc-v2-cbor): take moto's own parse of it
                self._params = dict(self.response.params or {})
            elif self.json_protocol:
                try:
                    self._params = json.loads(body or "{}")
                except (ValueError, UnicodeDecodeError):
                    self._params = {}
            else:
                self._params = {k: v[0] if isinstance(v, list) else v for k, v in self.response.querystring.items()}
        return self._params

    def param(self, name: str, default: str = "") -> str:
        value = self.params.get(name)
        return str(value) if value not in (None, "") else default

    def members(self, name: str) -> list[str]:
        """A list parameter: JSON array, or query-protocol Name.N / Name.member.N."""
        value = self.params.get(name)
        if isinstance(value, list):
            return [str(v) for v in value]
        pattern = re.compile(rf"^{re.escape(name)}\.(?:member\.)?(\d+)$")
        found = [(int(m.group(1)), v) for k, v in self.params.items() if (m := pattern.match(k))]
        return [str(v) for _, v in sorted(found)]

    def arn(self, resource: str, *, region: str | None = None, account: str | None = None) -> str:
        """An ARN of this request's service; region/account "" for the ARNs that have none."""
        return f"arn:aws:{self.service}:{self.region if region is None else region}:" \
               f"{self.account if account is None else account}:{resource}"

    def check(self, resource: str, action: str | None = None, context: dict[str, str] | None = None,
              **kw: Any) -> _Check:
        return _Check(action or f"{self.service}:{self.operation}", resource, context or {}, **kw)
