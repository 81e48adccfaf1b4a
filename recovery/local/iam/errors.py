"""The AWS-shaped error responses: a refused request is answered in its protocol's own form
(JSON, EC2 query, query XML, S3 XML), so boto3 raises an ordinary ``ClientError``."""

from __future__ import annotations

import json
import uuid
from typing import Any
from xml.sax.saxutils import escape

from werkzeug.exceptions import HTTPException

from recovery.local.iam.call import _Call
from recovery.local.iam.facts import _Check, _Principal


_REASONS = {
    ("identity", False): "because no identity-based policy allows the {action} action",
    ("identity", True): "with an explicit deny in an identity-based policy",
    ("resource", False): "because no resource-based policy allows the {action} action",
    ("resource", True): "with an explicit deny in a resource-based policy",
    ("pb", False): "because no permissions boundary allows the {action} action",
    ("pb", True): "with an explicit deny in a permissions boundary",
    ("session", False): "because no session policy allows the {action} action",
    ("session", True): "with an explicit deny in a session policy",
}


def _denial_message(principal: _Principal, check: _Check, answer: dict[str, Any]) -> str:
    denial = answer.get("denial") or {}
    reason = _REASONS.get((denial.get("policyType", "identity"), bool(denial.get("explicit"))),
                          _REASONS[("identity", False)])
    return (f"User: {principal.arn} is not authorized to perform: {check.action} on resource: {check.resource} "
            + reason.format(action=check.action))


# Our codes (query-protocol spelling) -> what the JSON protocols, EC2 and S3 call them, with
# EC2's and S3's own wording for refused credentials.
_JSON_CODES = {"AccessDenied": "AccessDeniedException", "InvalidClientTokenId": "UnrecognizedClientException",
               "ExpiredToken": "ExpiredTokenException"}
_EC2_ERRORS = {"InvalidClientTokenId": ("AuthFailure", 401, "AWS was not able to validate the provided access "
                                                            "credentials")}
_S3_ERRORS = {"InvalidClientTokenId": ("InvalidAccessKeyId", "The AWS Access Key Id you provided does not exist "
                                                             "in our records."),
              "ExpiredToken": ("ExpiredToken", "The provided token has expired.")}


def _error(call: _Call, code: str, message: str) -> Exception:
    """The AWS error for the request's protocol, in the form moto passes on to the client."""
    if call.service == "s3":
        return _s3_error(call, code, message)
    request_id = str(uuid.uuid4())
    if call.json_protocol:
        # call_action sends our body with its own response headers dict: the type goes in there.
        call.response.response_headers.update({"Content-Type": "application/x-amz-json-1.1",
                                               "X-Amzn-ErrorType": _JSON_CODES[code]})
        return _HTTPError(400, json.dumps({"__type": _JSON_CODES[code], "message": message}))
    if call.service == "ec2":
        ec2_code, status, text = _EC2_ERRORS.get(code, (code, 403, message))
        if code == "AccessDenied":
            ec2_code, text = "UnauthorizedOperation", f"You are not authorized to perform this operation. {message}"
        body = (f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Errors><Error><Code>{ec2_code}</Code>"
                f"<Message>{escape(text)}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>")
        return _HTTPError(status, body)
    call.response.response_headers["Content-Type"] = "text/xml"
    return _HTTPError(403, f"<?xml version=\"1.0\" encoding=\"UTF-8\"?><ErrorResponse><Error><Type>Sender</Type>"
                           f"<Code>{code}</Code><Message>{escape(message)}</Message></Error>"
                           f"<RequestId>{request_id}</RequestId></ErrorResponse>")


def _s3_error(call: _Call, code: str, message: str) -> Exception:
    from moto.s3.exceptions import BucketAccessDeniedError, S3ClientError

    if code != "AccessDenied":
        return S3ClientError(*_S3_ERRORS[code])
    # A BucketAccessDeniedError: DeleteObjects then answers per key, as S3 does when all are denied.
    error = BucketAccessDeniedError(bucket=call.response.bucket_name or "")
    error.message = message
    return error


class _HTTPError(HTTPException):
    """moto's call_action answers an HTTPException raised by the hook with (description, code)."""

    def __init__(self, status: int, body: str) -> None:
        super().__init__(description=body)
        self.code = status
