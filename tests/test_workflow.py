"""The GitHub workflow (.github/workflows/) and the IAM policies of its roles (.github/iam/, docs/ci.md).

zizmor and actionlint run over the workflows as real subprocesses (binaries from the dev extras) and
must report nothing; the same linters flag a deliberately bad workflow, so a clean report means
something. The rest reads the YAML for what a maintainer would notice: every action pinned to a
commit, no permission by default, and pull-request jobs that never see the deploy role.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
WORKFLOWS = ROOT / ".github" / "workflows"
IAM = ROOT / ".github" / "iam"
PREVIEW = WORKFLOWS / "preview.yml"

# The first release of each action whose action.yml says `using: node24`.
NODE24_SINCE = {
    "actions/checkout": (5, 0, 0),
    "actions/setup-python": (6, 0, 0),
    "aws-actions/configure-aws-credentials": (6, 0, 0),
    "pulumi/actions": (7, 0, 0),
}
USES = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?:\s+#\s*(?P<comment>.*))?$")
PINNED = re.compile(r"(?P<action>[\w.-]+/[\w.-]+(?:/[\w./-]+)?)@(?P<sha>[0-9a-f]{40})")
VERSION = re.compile(r"v(\d+)\.(\d+)\.(\d+)")
OIDC = "token.actions.githubusercontent.com"

BAD_WORKFLOW = """\
name: bad
on:
  pull_request:
jobs:
  preview:
    runs-on: ubuntu-latest
    steps:
      - uses: actions/checkout@v4
      - run: echo "${{ github.event.pull_request.title }}"
      - run: cat $HOME/notes
"""


def tool(name: str) -> str:
    """The linter installed beside this interpreter (the dev extras), else on PATH."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: `make venv` installs the dev extras (pyproject.toml)")
    return found


def zizmor(target: Path, persona: str) -> tuple[int, list[dict[str, Any]]]:
    # Offline and without a token: no audit asks GitHub anything, so the result is this tree's alone.
    env = {k: v for k, v in os.environ.items() if k not in ("GH_TOKEN", "GITHUB_TOKEN", "ZIZMOR_GITHUB_TOKEN")}
    proc = subprocess.run([tool("zizmor"), "--offline", "--no-config", "--no-progress", "--format=json",
                           f"--persona={persona}", str(target)],
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.stdout.strip(), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def actionlint(files: list[Path]) -> tuple[int, list[dict[str, Any]]]:
    # shellcheck from the dev extras checks every `run:`; pyflakes is off (no Python steps here).
    proc = subprocess.run([tool("actionlint"), f"-shellcheck={tool('shellcheck')}", "-pyflakes=",
                           "-no-color", "-format", "{{json .}}", *map(str, files)],
                          capture_output=True, text=True, cwd=files[0].parent, timeout=120)
    assert proc.stdout.strip(), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def workflow_files() -> list[Path]:
    files = sorted([*WORKFLOWS.glob("*.yml"), *WORKFLOWS.glob("*.yaml")])
    assert files, f"no workflow in {WORKFLOWS}"
    return files


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text())
    # YAML 1.1 reads the bare key `on` as True.
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def jobs() -> Iterator[tuple[str, dict[str, Any]]]:
    for path in workflow_files():
        for name, job in load(path)["jobs"].items():
            yield f"{path.name}:{name}", job


def steps_using(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [s for s in job.get("steps", []) if str(s.get("uses", "")).split("@")[0] == action]


def runs_on_pull_requests(job: dict[str, Any]) -> bool:
    """A job runs for a pull request unless its condition names another event only."""
    cond = str(job.get("if", ""))
    return "pull_request" in cond or "github.event_name" not in cond


def policy(name: str) -> dict[str, Any]:
    doc = json.loads((IAM / name).read_text())
    assert doc["Version"] == "2012-10-17"
    return doc


# --- the linters -------------------------------------------------------------------------------

@pytest.mark.parametrize("persona", ["regular", "pedantic"])
def test_zizmor_reports_nothing(persona: str) -> None:
    code, findings = zizmor(WORKFLOWS, persona)
    assert findings == [], [(f["ident"], f["desc"]) for f in findings]
    assert code == 0


def test_actionlint_reports_nothing() -> None:
    code, findings = actionlint(workflow_files())
    assert findings == [], [f"{f['filepath']}:{f['line']}: {f['message']} [{f['kind']}]" for f in findings]
    assert code == 0


def test_the_linters_flag_a_bad_workflow(tmp_path: Path) -> None:
    wf = tmp_path / ".github" / "workflows" / "bad.yml"
    wf.parent.mkdir(parents=True)
    wf.write_text(BAD_WORKFLOW)

    code, findings = zizmor(wf.parent, "regular")
    assert code != 0
    assert {"unpinned-uses", "template-injection", "artipacked", "excessive-permissions"} <= {f["ident"] for f in findings}

    code, problems = actionlint([wf])
    assert code != 0
    kinds = {p["kind"] for p in problems}
    assert {"expression", "shellcheck", "action"} <= kinds, problems  # injection, SC2086, node20


# --- what the workflow promises ---------------------------------------------------------------

def test_every_action_is_pinned_to_a_commit_of_a_node24_release() -> None:
    seen: dict[str, set[tuple[str, str]]] = {}
    for path in workflow_files():
        for n, line in enumerate(path.read_text().splitlines(), 1):
            m = USES.match(line)
            if not m:
                continue
            where = f"{path.name}:{n}"
            pin = PINNED.fullmatch(m["ref"])
            assert pin, f"{where}: {m['ref']} is not pinned to a 40-hex commit SHA"
            version = VERSION.fullmatch((m["comment"] or "").strip())
            assert version, f"{where}: the pin needs its release as a `# vX.Y.Z` comment"
            action = pin["action"]
            assert action in NODE24_SINCE, f"{where}: {action} is new here: add its first node24 release"
            got = tuple(int(x) for x in version.groups())
            assert got >= NODE24_SINCE[action], f"{where}: {action} v{'.'.join(version.groups())} predates node24"
            seen.setdefault(action, set()).add((pin["sha"], version[0]))
    assert seen, "no `uses:` found"
    for action, pins in seen.items():
        assert len(pins) == 1, f"{action} is pinned to more than one commit: {sorted(pins)}"


def test_no_permission_by_default_and_each_job_names_its_own() -> None:
    for path in workflow_files():
        assert load(path).get("permissions") == {}, f"{path.name}: top level must be `permissions: {{}}`"
    for name, job in jobs():
        perms = job.get("permissions")
        assert isinstance(perms, dict) and perms, f"{name}: no permissions block of its own"
        oidc = bool(steps_using(job, "aws-actions/configure-aws-credentials"))
        comments = any(s.get("with", {}).get("comment-on-pr") for s in steps_using(job, "pulumi/actions"))
        allowed = {"contents": "read"} | ({"id-token": "write"} if oidc else {}) \
            | ({"pull-requests": "write"} if comments else {})
        assert perms == allowed, f"{name}: permissions {perms}, expected exactly {allowed}"


def test_checkout_never_persists_credentials() -> None:
    for name, job in jobs():
        for step in steps_using(job, "actions/checkout"):
            assert step.get("with", {}).get("persist-credentials") is False, f"{name}: persist-credentials: false"


def test_no_template_expansion_inside_run() -> None:
    for name, job in jobs():
        for step in job.get("steps", []):
            assert "${{" not in str(step.get("run", "")), f"{name}: pass expressions to `run:` through env"


def test_pull_request_jobs_never_see_the_deploy_role() -> None:
    previews = [(n, j) for n, j in jobs() if runs_on_pull_requests(j)]
    assert previews, "no job runs on pull_request"
    for name, job in previews:
        text = json.dumps(job)
        assert "DEPLOY_ROLE_ARN" not in text and "AWS_ROLE_ARN" not in text, f"{name}: references the deploy role"
        assert job.get("environment") == "preview", f"{name}: must run in the approval-gated `preview` environment"
        for step in steps_using(job, "aws-actions/configure-aws-credentials"):
            assert step["with"]["role-to-assume"] == "${{ vars.PREVIEW_ROLE_ARN }}", name
        for step in steps_using(job, "pulumi/actions"):
            assert step["with"]["command"] == "preview", f"{name}: only previews run for a pull request"


def test_deploys_run_on_main_in_protected_environments_as_the_deploy_role() -> None:
    deploys = [(n, j) for n, j in jobs() if any(s["with"]["command"] == "up" for s in steps_using(j, "pulumi/actions"))]
    assert deploys
    for name, job in deploys:
        assert not runs_on_pull_requests(job), f"{name}: `pulumi up` must not run for a pull request"
        assert job.get("environment") in ("production", "production-dr"), name
        roles = {s["with"]["role-to-assume"] for s in steps_using(job, "aws-actions/configure-aws-credentials")}
        assert roles == {"${{ vars.DEPLOY_ROLE_ARN }}"}, f"{name}: {roles}"


def test_the_passphrase_reaches_only_jobs_in_an_environment() -> None:
    for path in workflow_files():
        doc = load(path)
        assert "secrets." not in json.dumps(doc.get("env", {})), f"{path.name}: no secret in workflow-level env"
    for name, job in jobs():
        if "PULUMI_CONFIG_PASSPHRASE" in json.dumps(job):
            assert job.get("environment") in ("preview", "production", "production-dr"), name


# --- the roles' IAM policies (.github/iam/) -----------------------------------------------------

def trust_subjects(doc: dict[str, Any]) -> set[str]:
    subs: set[str] = set()
    for st in doc["Statement"]:
        assert st["Effect"] == "Allow" and st["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert st["Principal"]["Federated"].endswith(f":oidc-provider/{OIDC}")
        cond = st["Condition"]
        assert set(cond) == {"StringEquals"}, f"exact matches only, no wildcards: {sorted(cond)}"
        assert cond["StringEquals"][f"{OIDC}:aud"] == "sts.amazonaws.com"
        sub = cond["StringEquals"][f"{OIDC}:sub"]
        subs |= {sub} if isinstance(sub, str) else set(sub)
    assert not any("*" in s or "?" in s for s in subs), subs
    return subs


def test_the_preview_role_trusts_only_the_preview_environment() -> None:
    subs = trust_subjects(policy("preview-trust-policy.json"))
    assert len(subs) == 1 and re.fullmatch(r"repo:[^:/]+/[^:/]+:environment:preview", subs.pop())


def test_the_deploy_role_trusts_only_the_deploy_environments() -> None:
    subs = trust_subjects(policy("deploy-trust-policy.json"))
    envs = {j["environment"] for _, j in jobs() if not runs_on_pull_requests(j)}
    repos = {s.split(":")[1] for s in subs}
    assert len(repos) == 1, repos
    repo = repos.pop()
    assert subs == {f"repo:{repo}:environment:{e}" for e in envs}


def test_the_preview_role_may_only_read() -> None:
    for st in policy("preview-permissions-policy.json")["Statement"]:
        assert st["Effect"] == "Allow"
        actions = [st["Action"]] if isinstance(st["Action"], str) else st["Action"]
        for action in actions:
            service, verb = action.split(":")
            assert "*" not in action, action
            assert verb.startswith(("Get", "List", "Describe")) or action == "kms:Decrypt", f"{action} is not read-only"
            assert service != "sts", f"{action}: the preview role assumes no other role"
