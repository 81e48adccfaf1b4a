"""Authorise every request to the in-process moto emulator as AWS IAM would.

moto 5.2.5's own enforcement ignores conditions and, for most services, resource scoping, and
names actions after its operations (``s3:HeadBucket``, ``monitoring:*``). ``install()`` replaces
it in this process: each request that reaches
``ActionAuthenticatorMixin._authenticate_and_authorize_action`` (every service request moto
serves; S3 calls it once per bucket or object operation) is turned into AWS's IAM action(s),
resource ARN(s) and request context, and evaluated by ``@cloud-copilot/iam-simulate`` in a
Node.js sidecar (``recovery/local/evaluator/simulate.mjs``). A denial is answered with the
protocol's own AWS error, so boto3 raises an ordinary ``ClientError``. moto's condition-less
bucket-policy check (``FakeBucket.get_permission``, used by ``S3Response._key_response`` and
DeleteObjects) is neutralised, since ours evaluates the bucket policy with its conditions.
moto's INITIAL_NO_AUTH_ACTION_COUNT is not consulted and SigV4 signatures are not verified
(moto's verification is broken for Route 53; see ENVIRONMENT.md).

Who is calling (from the SigV4 credential: the Authorization header, or X-Amz-Credential of a
presigned URL):

- an IAM user's access key: the user's inline and attached policies and those of its groups;
  aws:username, aws:userid. An Inactive key is refused with InvalidClientTokenId.
- an assumed-role key (moto's STS backend): the role's inline and attached policies, its
  permissions boundary and the session policy passed to AssumeRole; the caller is the session
  ARN arn:aws:sts::ACCOUNT:assumed-role/NAME/SESSION, aws:PrincipalArn the role ARN and
  aws:TokenIssueTime the session's creation. A wrong session token or an expired session is
  refused (InvalidClientTokenId / ExpiredToken).
- a key shaped like an AWS key (AKIA/ASIA + 16) that moto does not know (e.g. deleted): refused
  with InvalidClientTokenId, as AWS does.
- any other key (the dummy "testing"): the account root arn:aws:iam::ACCOUNT:root. Its identity
  allows everything, but resource-policy Denies (bucket policies, trust policies, key
  policies, secret policies) still apply to it, as in AWS.
- no credential at all: the anonymous principal (only a resource policy can allow it).

What is evaluated per request: the identity policies above, the resource policy (S3 bucket
policy, IAM role trust policy for sts:AssumeRole, the KMS key policy moto stores, a Secrets
Manager secret's resource policy), permissions boundaries and session policies, with the
context keys aws:SecureTransport ("true" only over TLS: see MotoServer), aws:PrincipalArn,
aws:PrincipalAccount, aws:PrincipalType, aws:userid, aws:username (users), aws:TokenIssueTime
(sessions), aws:CurrentTime, aws:EpochTime, aws:RequestedRegion (credential scope), aws:SourceIp,
s3:x-amz-server-side-encryption and s3:x-amz-server-side-encryption-aws-kms-key-id (object
writes; for UploadPart and CompleteMultipartUpload those given at CreateMultipartUpload, which
is what AWS applies), s3:prefix/s3:delimiter/s3:max-keys (listings), sts:RoleSessionName and
sts:ExternalId (AssumeRole), kms:RequestAlias, and ec2:Vpc where the EC2 resource has one.
A request may need several actions (CopyObject: s3:PutObject on the target and s3:GetObject on
the source; PutObject with x-amz-tagging also s3:PutObjectTagging; FailoverGlobalCluster the
global cluster and the target cluster); all must be allowed. ``sts:GetCallerIdentity`` and
CORS preflights are never refused. An operation that is not in the tables (actions.py,
actions_s3.py) is allowed for the root and, for any other principal, evaluated as
``service:Operation`` on "*" and recorded with ``"unmapped": true``.

Known limits:

- Not modelled: SCPs, RCPs, VPC endpoint policies, S3 ACLs, S3 Block Public Access, access
  points, users' permissions boundaries, managed session policies (AssumeRole PolicyArns).
- Dependent actions AWS checks behind a call are not checked: kms:GenerateDataKey/kms:Decrypt
  behind SSE-KMS objects, iam:PassRole (e.g. PutBucketReplication), ec2:CreateTags behind
  TagSpecifications.
- Condition keys not listed above (aws:PrincipalTag, aws:ResourceTag, aws:MultiFactorAuthPresent,
  s3:x-amz-acl, kms:EncryptionContext, route53:ChangeResourceRecordSets* ...) are absent, so a
  policy that tests them sees a missing key. iam-simulate drops keys the action's resource type
  does not define, as AWS does (ec2:Vpc exists for security groups and network interfaces, not
  for instances).
- An unmapped operation is evaluated on "*", which iam-simulate treats as "any resource pattern
  in the policies" for resource-scoped actions: lenient. For the root it is not evaluated at all,
  and a root request the evaluator rejects as invalid is allowed (the record says why).
- The root may call sts:AssumeRole here (AWS refuses root credentials for it): the local mode
  runs as root and assumes roles.
- DeleteObjects is refused whole (every key reported AccessDenied) when any key is denied;
  AWS decides per key.
- A key moto does not know and that does not look like an AWS key is root, so a typo in a
  dummy key is not refused. Signatures are not checked, so any secret works with a known key.
- The action catalogue is the iam-data release pinned in ../evaluator/package-lock.json: an action
  AWS added later is "unknown" and refused for IAM principals.

Records: with ``install(record_file=path)`` each authorised request appends one JSON line
(``read_records(path)`` reads them back): time, principal (the caller's ARN; the access key for a
refused credential), principal_arn (the role ARN for a session), operation ("s3:PutObject" as the
API names it), action and resource (of the deciding check: the first refused, else the first),
region, decision, detail (the deciding statement Sids, "no statement allows ...", or why nothing
was evaluated), unmapped, checks (how many checks the request needed) and checked (each
[action, resource] pair of them).

The sidecar: one ``node evaluator/simulate.mjs`` per Python process, started on first use,
restarted if it dies, stopped by ``uninstall()`` and at exit. It needs Node.js 20+ and
``recovery/local/evaluator/node_modules`` (``make venv`` installs it with ``npm ci``).

The modules, each importing only those before it: facts (a check, the caller, times and
documents), sidecar (the node process), call (the request), principal (who is calling),
actions_s3 and actions (request -> checks), records, errors (AWS-shaped refusals), hook (the
moto patch: install, uninstall).
"""

from __future__ import annotations

from recovery.local.iam.hook import install, installed, uninstall
from recovery.local.iam.records import read_records
from recovery.local.iam.sidecar import EVALUATOR_DIR, check_prerequisites

__all__ = ["EVALUATOR_DIR", "check_prerequisites", "install", "installed", "read_records", "uninstall"]
