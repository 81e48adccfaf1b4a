"""Benchmarks of issues 8 and 17: `recovery` backup/restore/verify against the DR plan's pipeline and the limit.

    make bench                                    # ~250 MB and ~1 GB, 3 runs each -> docs/benchmarks.md (+ .json)
    make bench BENCH_ARGS="--sizes 250M --runs 1" # a quick look
    .venv/bin/python -m bench --prepare           # only generate the cached data (bench/.data/, ~5 GB)
    .venv/bin/python -m bench --report-only       # re-render docs/benchmarks.md from docs/benchmarks.json
    .venv/bin/python -m bench --smoke --data-dir D --out F   # what tests/test_bench_smoke.py runs

Profiling one `recovery` command inside the harness (py-spy from PyPI, `pip install py-spy`):

    BENCH_PROFILE="restore chain" BENCH_PROFILE_ARGS="--idle --threads" \\
        .venv/bin/python -m bench --sizes 250M --runs 1 --groups restore-chain --out /tmp/b/benchmarks.md
    # -> bench/.data/profile-restore-chain-250M-<time>.txt (py-spy raw: collapsed stacks + counts)

Modules: `data` (deterministic generators, cache), `measure` (wall, CPU, peak RSS of a process
tree, server CPU), `__main__` (competitors, alternating rounds), `report` (medians, ratios,
issue 17's targets, hours per TB beside the RTOs of Pulumi.production.yaml; appends `findings.md`,
the hand-written profile notes).

The parallel format's competitors (`backup db --format parallel`, `restore db --jobs 2`, against
`psql < plain.sql` and `pg_restore -j2` of a local `pg_dump -Fc` file) run only when `recovery
backup db --help` lists `parallel` as a --format; otherwise they are recorded as skipped, with the
reason, and the report says so.

Not part of `make test` (these machines are noisy); tests/test_bench_smoke.py runs one tiny
round of every competitor so the harness cannot rot.
"""
