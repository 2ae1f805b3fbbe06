"""`bellmax bench ARGS...`: parse, plan, execute, report."""

from __future__ import annotations

import shlex

from bellmax.bench.execute import check_installed, measure, print_commands, runs_root
from bellmax.bench.parser import parse_args
from bellmax.bench.plans import make_plan
from bellmax.bench.writeup import write_report


def main(argv: list[str]) -> int:
    """Entry point of `bellmax bench ARGS...` (dispatched from bellmax.cli)."""
    opts = parse_args(list(argv))
    if opts is None:  # --help
        return 0
    if opts.benchmark == "bomber":  # in this process, bellmax alone
        from bellmax.bench.bomber import main as bomber_main

        return bomber_main(opts)
    invocation = "bellmax bench " + shlex.join(argv)
    if not opts.dry_run:
        check_installed(opts)
    root = runs_root(opts)
    plan = make_plan(opts, root)
    if opts.dry_run:
        print_commands(plan)
        return 0
    write_report(opts, plan, root, invocation, measure(opts, plan, root, invocation))
    return 0
