// IAM evaluator sidecar for the local emulator (see recovery/local/iam/).
//
// Reads one JSON request per line on stdin, writes one JSON answer per line on stdout, in order.
// A request is an @cloud-copilot/iam-simulate `Simulation` (plus an optional "id" echoed back):
//   {"id": 1, "request": {"principal": ARN | "anonymous", "action": "s3:GetObject",
//    "resource": {"resource": ARN, "accountId": "123456789012"}, "contextVariables": {...}},
//    "identityPolicies": [{"name", "policy"}], "resourcePolicy"?, "permissionBoundaryPolicies"?,
//    "sessionPolicy"?}
// An answer:
//   {"id", "decision": "Allowed" | "ImplicitlyDenied" | "ExplicitlyDenied", "detail": short text,
//    "denial"?: {"policyType": "identity" | "resource" | "pb" | "session" | ..., "explicit": bool},
//    "errors"?: validation errors, "invalid"?: true}
// Bad input (unparseable line, unknown action, an ARN no resource type of the action fits, a
// policy that does not validate) is answered as ImplicitlyDenied with "invalid": true; this
// process never exits on a request.

import { createInterface } from 'node:readline'
import {
  anonymousPrincipal,
  getDenialReasons,
  getGrantReasons,
  runSimulation
} from '@cloud-copilot/iam-simulate'

// In AWS the resource of a request is a literal string: a list call is evaluated against e.g.
// arn:aws:rds:us-east-1:123456789012:db:* and only policy patterns that match that literal text
// apply. iam-simulate reads '*' and '?' in the request as wildcards and switches to a permissive
// "any matching pattern" mode, so we swap them for characters that only policy wildcards match.
const LITERAL = { '*': '\u2217', '?': '\u2047' }

function literalResource(resource) {
  if (resource === '*') return resource // wildcard-only actions are evaluated on "*" itself
  return resource.replace(/[*?]/g, (c) => LITERAL[c])
}

function toSimulation(req) {
  const { id, ...simulation } = req
  const request = simulation.request ?? {}
  return {
    serviceControlPolicies: [],
    resourceControlPolicies: [],
    identityPolicies: [],
    ...simulation,
    request: {
      contextVariables: {},
      ...request,
      principal: request.principal === 'anonymous' ? anonymousPrincipal : request.principal,
      resource: { ...request.resource, resource: literalResource(String(request.resource?.resource ?? '')) }
    }
  }
}

function statementName(s) {
  return s.statementId ?? `#${s.statementIndex}`
}

const POLICY_LABEL = {
  identity: 'identity policy',
  resource: 'resource policy',
  pb: 'permissions boundary',
  session: 'session policy',
  scp: 'SCP',
  rcp: 'RCP',
  vpce: 'VPC endpoint policy',
  's3-bpa': 'S3 Block Public Access'
}

const IMPLICIT_ORDER = ['pb', 'session', 'identity', 'resource']

function grantDetail(analysis) {
  const grants = getGrantReasons(analysis)
    .filter((g) => g.policyType === 'identity' || g.policyType === 'resource')
    .map((g) =>
      g.policyType === 'identity'
        ? `${g.policyIdentifier}:${statementName(g)}`
        : `resource policy:${statementName(g)}`
    )
  return `allowed by ${grants.join(', ') || 'policy'}`
}

// getDenialReasons does not cover session policies, which AWS evaluates like a boundary.
function sessionDenial(analysis) {
  const session = analysis.sessionAnalysis
  if (!session || session.result === 'Allowed') return []
  if (session.result === 'ExplicitlyDenied') {
    return session.denyStatements.map((s) => ({
      policyType: 'session',
      denialType: 'Explicit',
      statementId: s.statement.sid(),
      statementIndex: s.statement.index()
    }))
  }
  return [{ policyType: 'session', denialType: 'Implicit' }]
}

function denialAnswer(decision, analysis) {
  const reasons = [...getDenialReasons(analysis), ...sessionDenial(analysis)]
  const explicit = reasons.filter((r) => r.denialType === 'Explicit')
  if (decision === 'ExplicitlyDenied' && explicit.length) {
    const names = explicit.map((r) => `${POLICY_LABEL[r.policyType] ?? r.policyType}:${statementName(r)}`)
    return {
      detail: `explicit deny by ${names.join(', ')}`,
      denial: { policyType: explicit[0].policyType, explicit: true }
    }
  }
  const implicit = reasons.filter((r) => r.denialType === 'Implicit')
  // Name the layer that stopped an otherwise allowed request: a boundary or session policy
  // first, then the identity policies; a resource policy only when nothing else is missing
  // (a trust or key policy that does not name the caller).
  const rank = (r) => {
    const i = IMPLICIT_ORDER.indexOf(r.policyType)
    return r.blocking ? -1 : i < 0 ? IMPLICIT_ORDER.length : i
  }
  const first = [...implicit].sort((a, b) => rank(a) - rank(b))[0]
  const where = implicit.map((r) => POLICY_LABEL[r.policyType] ?? r.policyType)
  return {
    detail: `no statement allows${where.length ? ` (${[...new Set(where)].join(', ')})` : ''}`,
    denial: { policyType: first?.policyType ?? 'identity', explicit: false }
  }
}

function invalid(message, errors) {
  return { decision: 'ImplicitlyDenied', detail: `invalid request: ${message}`, errors, invalid: true }
}

// iam-simulate reports bad input as terse codes; say what was wrong in the request's own terms.
function explainErrors(req, errors) {
  const { action, resource } = req.request ?? {}
  const arn = resource?.resource
  switch (errors?.message) {
    case 'invalid.service':
      return `unknown service in action ${action}`
    case 'invalid.action':
      return `unknown action ${action}`
    case 'no.resource.types':
      return `resource ${arn} fits no resource type of ${action}`
    case 'must.use.wildcard':
      return `${action} takes only resource "*", not ${arn}`
  }
  const problems = Object.entries(errors ?? {})
    .filter(([key]) => key !== 'message')
    .flatMap(([kind, value]) =>
      Array.isArray(value)
        ? value.map((e) => `${kind} ${e.path ?? ''}: ${e.message ?? e}`)
        : Object.entries(value).flatMap(([name, list]) =>
            list.map((e) => `${kind} ${name} ${e.path}: ${e.message}`)
          )
    )
  return [errors?.message ?? 'rejected', ...problems].join('; ')
}

async function evaluate(req) {
  const result = await runSimulation(toSimulation(req), {})
  if (result.resultType === 'error') {
    return invalid(explainErrors(req, result.errors), result.errors)
  }
  const decision = result.overallResult
  // Literal resources keep us in single mode; a wildcard answer would be a bug on our side.
  const analysis = result.resultType === 'single' ? result.result.analysis : result.results[0]?.analysis
  if (!analysis) return { decision, detail: 'no policy pattern matches' }
  if (decision === 'Allowed') return { decision, detail: grantDetail(analysis) }
  return { decision, ...denialAnswer(decision, analysis) }
}

async function answer(line) {
  let req
  try {
    req = JSON.parse(line)
  } catch (e) {
    return invalid(`not JSON: ${e.message}`)
  }
  try {
    return { id: req.id, ...(await evaluate(req)) }
  } catch (e) {
    // e.g. iam-data has no file for an unknown service prefix
    return { id: req.id, ...invalid(String(e?.message ?? e).split('\n')[0]) }
  }
}

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity })
for await (const line of lines) {
  if (!line.trim()) continue
  process.stdout.write(JSON.stringify(await answer(line)) + '\n')
}
