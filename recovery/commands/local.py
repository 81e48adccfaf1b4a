"""`recovery local up|down|status|outage`: the embedded default environment (recovery/local/)."""

from __future__ import annotations

import time
from typing import Any

import click

from recovery.commands.common import emit_json, out

_DIR = click.option("--dir", "path", type=click.Path(file_okay=False), envvar="RECOVERY_LOCAL_DIR",
                    help="Directory of the local environment [default .recovery/local; env RECOVERY_LOCAL_DIR].")
_JSON = click.option("--json", "as_json", is_flag=True, help="Print a machine-readable result on stdout.")


@click.group()
def local() -> None:
    """A complete local DR environment: AWS emulator, PostgreSQL 15 and a simulated XAI node."""


def _render(st: dict[str, Any]) -> None:
    def since(epoch: float | None) -> str:
        if not epoch:
            return "-"
        return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch)) + f" ({(time.time() - epoch) / 60:.0f} min ago)"

    def mark(ok: bool) -> str:
        return "✓" if ok else "✗"

    out(f"local environment in {st['dir']}, up since {since(st.get('started_at'))}")
    out(f"  stacks      {', '.join(st['stacks'])}  (use --stack local / --stack local-dr)")
    out(f"{mark(st['aws']['running'])} AWS         {st['aws']['endpoint']}  (moto + extensions, pid {st['aws']['pid']})")
    held = st.get("outage")
    if held:  # issue 14
        out(f"✗ OUTAGE      {', '.join(held['regions'])} since {since(held.get('since'))}: stopped "
            f"{', '.join(held.get('stopped') or []) or 'nothing'}  (heal: recovery local outage --heal)")
    out(f"{mark(st['postgres']['running'])} PostgreSQL  {st['postgres']['dsn']}  "
        f"({st['postgres'].get('role') or 'not answering'}; throwaway sandbox credential)")
    out(f"{mark(st['node']['running'])} XAI node    {st['node']['url']}  data {st['node']['data_dir']}  (pid {st['node']['pid']})")
    redis = st.get("redis") or {}
    if redis:  # issue 7: the cache group's redis-server
        out(f"{mark(redis['running'])} Redis       {redis.get('address') or '-'}  "
            f"({'cache group ' + str(redis.get('group')) if redis['running'] else redis.get('note')})")
    for what, svc in (st.get("site_services") or {}).items():  # issue 15: explorer and monitoring
        out(f"{mark(svc['running'])} {what.capitalize():<11} {svc.get('url') or '-'}  (pid {svc.get('pid')})")
    dr = st.get("dr")
    if dr:  # the DR site (issue 6): hot standby and DR node
        pg_role = dr["postgres"].get("role") or "not answering"
        out(f"{mark(dr['postgres']['running'])} DR database port {dr['postgres']['port']}  ({pg_role}; stack local-dr)")
        out(f"{mark(dr['node']['running'])} DR node     {dr['node']['url']}  data {dr['node']['data_dir']}  (pid {dr['node']['pid']})")


@local.command("up")
@_DIR
@_JSON
@click.option("--mine-interval", type=click.FloatRange(min=0.05, max=3600), default=1.0, show_default=True, help="Seconds between mined blocks.")
def up_cmd(path: str | None, as_json: bool, mine_interval: float) -> None:
    """Start the environment and deploy the Pulumi program into it for both stacks (local, local-dr)."""
    from recovery.local.environment import up

    st = up(path, mine_interval=mine_interval, progress=lambda m: click.echo(f"… {m}", err=True))
    if as_json:
        emit_json(st)
    else:
        _render(st)


@local.command("down")
@_DIR
@_JSON
def down_cmd(path: str | None, as_json: bool) -> None:
    """Stop every process of the environment and remove its directory."""
    from recovery.local.environment import down

    result = down(path)
    if as_json:
        emit_json(result)
    else:
        out(f"stopped {', '.join(result['stopped']) or 'nothing (was not running)'}; removed {result['dir']}")


@local.command("status")
@_DIR
@_JSON
def status_cmd(path: str | None, as_json: bool) -> None:
    """What runs, where and since when."""
    from recovery.local.environment import LocalEnvError, status

    st = status(path)
    if as_json:
        emit_json(st)
    else:
        _render(st)
    down_parts = [k for k in ("aws", "postgres", "node") if not st[k]["running"]]
    if st.get("dr"):  # the DR site (issue 6)
        down_parts += [f"dr {k}" for k in ("postgres", "node") if not st["dr"][k]["running"]]
    if down_parts and st.get("outage"):
        # stopped on purpose by `recovery local outage`: degraded, and the fix is the heal
        raise LocalEnvError(f"local environment is degraded: {', '.join(down_parts)} not running "
                            f"(outage of {', '.join(st['outage']['regions'])})", "heal with `recovery local outage --heal`")
    if down_parts:
        raise LocalEnvError(f"local environment is degraded: {', '.join(down_parts)} not running",
                            "restart with `recovery local down && recovery local up`")


@local.command("outage")
@click.argument("region", required=False)
@click.option("--heal", is_flag=True, help="End the outage: heal the emulator and restart the stopped services.")
@_DIR
@_JSON
def outage_cmd(region: str | None, heal: bool, path: str | None, as_json: bool) -> None:
    """Take a local site's region down (its PostgreSQL, node and Redis stopped hard, the emulator
    refusing requests signed for it), or --heal it (recovery/local/outage.py)."""
    from recovery.errors import InputError
    from recovery.local import outage

    if heal == bool(region):
        raise InputError("give either REGION or --heal", "e.g. `recovery local outage us-east-1`, then "
                         "`recovery local outage --heal`")
    result = outage.heal(path) if heal else outage.begin(str(region), path)
    if as_json:
        emit_json(result)
    elif heal:
        role = f"; its database is {result['postgres_role']}" if result.get("postgres_role") else ""
        out(f"healed {', '.join(result['healed'])}: started {', '.join(result['started']) or 'nothing'}{role}")
    else:
        note = "" if result["emulator"] else " (the emulator has no outage control: AWS requests still served)"
        out(f"outage of {', '.join(result['regions'])}: stopped {', '.join(result['stopped']) or 'nothing'}{note}")
