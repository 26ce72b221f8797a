"""Chaos runner: the bridge's promise (nothing lost, nothing sent twice) under faults, by id.

Each scenario runs the real processes (``bridge run --role receiver|worker|all`` and
``bridge simulator``, as subprocesses) against a RabbitMQ node of the runner's own, drives load
(Catapult v1 callbacks posted to the receiver, send commands published to the send queue),
injects its fault (RabbitMQ stopped, its connections closed, processes killed, Catapult away or
misbehaving, the network to RabbitMQ cut or stalled through the runner's TCP proxy), waits for
the bridge to settle and counts every callback, event, command, result, dead letter and message
at Catapult by id. The table at the end has one row per scenario; every loss and duplicate is
listed with its id, when it happened against the faults, and what the logs say about it. The
exit status is 1 when any scenario lost or doubled anything (or a process exited by itself).

    uv run --frozen python bench/chaos.py                      # every scenario (~10 min)
    uv run --frozen python bench/chaos.py --quick              # shorter loads and outages
    uv run --frozen python bench/chaos.py -s worker-kill -s catapult-away
    uv run --frozen python bench/chaos.py --list

RabbitMQ: the runner starts its own node (``chaos@localhost``, AMQP 127.0.0.1:5680, distribution
port 25680, data and logs in a temporary directory) from the installed RabbitMQ and stops it at
the end; the machine's default node is never touched (checked before and after). Run it alone:
``flock /tmp/bridge-heavy.lock uv run --frozen python bench/chaos.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from chaos_ledger import DEFINITIONS  # noqa: E402
from chaos_rabbit import DefaultNodeGuard, PrivateNode, stop_leftover_node  # noqa: E402
from chaos_scenarios import SCENARIOS  # noqa: E402
from chaos_stage import Options, Outcome, Stage  # noqa: E402
from machine import describe  # noqa: E402

NODE_NAME = "chaos@localhost"
FINDINGS_SHOWN = 8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Run the bridge's chaos scenarios and count what was lost or doubled."
    )
    parser.add_argument(
        "-s", "--scenario", action="append", choices=sorted(SCENARIOS), metavar="NAME",
        help="run only this scenario (repeatable; --list shows them)",
    )  # fmt: skip
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--quick", action="store_true", help="halve loads and outages")
    parser.add_argument("--callback-rate", type=float, default=30.0, help="callbacks/s (30)")
    parser.add_argument("--send-rate", type=float, default=10.0, help="send commands/s (10)")
    parser.add_argument("--load-s", type=float, default=30.0, help="load of broker scenarios (30)")
    parser.add_argument("--fault-s", type=float, default=15.0, help="load of Catapult faults (15)")
    parser.add_argument("--outage-s", type=float, default=60.0, help="Catapult away for (60)")
    parser.add_argument("--broker-down-s", type=float, default=3.0, help="RabbitMQ stopped for (3)")
    parser.add_argument("--stall-s", type=float, default=10.0, help="network stall (10)")
    parser.add_argument("--kill-commands", type=int, default=2000, help="worker-kill sends (2000)")
    parser.add_argument(
        "--kill-latency-ms", type=float, default=20.0, help="Catapult latency in worker-kill (20)"
    )
    parser.add_argument("--senders", type=int, default=4, help="sending numbers (4)")
    parser.add_argument("--settle-s", type=float, default=120.0, help="deadline to settle (120)")
    parser.add_argument(
        "--quiet-s", type=float, default=15.0, help="settled after no progress for (15)"
    )
    parser.add_argument(
        "--retry-delays", default="1,2,5,10,20",
        help="the worker's retry tiers in seconds, short so a run is bounded (1,2,5,10,20)",
    )  # fmt: skip
    parser.add_argument("--log-level", default="DEBUG", choices=["DEBUG", "INFO"])
    parser.add_argument("--seed", type=int, default=8, help="seed of the simulator's faults (8)")
    parser.add_argument("--amqp-port", type=int, default=5680, help="the runner's node (5680)")
    parser.add_argument("--dist-port", type=int, default=25680, help="its distribution port")
    parser.add_argument("--out", type=Path, help="where logs and report.json go (a temp dir)")
    args = parser.parse_args(argv)
    if not 5680 <= args.amqp_port <= 5689 or not 25680 <= args.dist_port <= 25689:
        parser.error("the chaos node's ports are 5680-5689 (AMQP) and 25680-25689 (distribution)")
    return args


def options_from(args: argparse.Namespace) -> Options:
    scale = 0.5 if args.quick else 1.0
    return Options(
        callback_rate=args.callback_rate,
        send_rate=args.send_rate,
        load_s=args.load_s * scale,
        fault_s=args.fault_s * scale,
        outage_s=args.outage_s * scale,
        broker_down_s=args.broker_down_s,
        stall_s=args.stall_s * scale,
        kill_commands=int(args.kill_commands * scale),
        kill_latency_ms=args.kill_latency_ms,
        senders=args.senders,
        settle_s=args.settle_s,
        quiet_s=args.quiet_s,
        retry_delays_s=[float(x) for x in args.retry_delays.split(",") if x.strip()],
        log_level=args.log_level,
        seed=args.seed,
    )


async def run_one(
    name: str, *, options: Options, node: PrivateNode, out: Path, run_id: str
) -> Outcome:
    print(f"\n== {name}: {(SCENARIOS[name].__doc__ or '').strip()}", flush=True)
    if not node.is_running():
        await node.start()
    stage = Stage(name, options=options, node=node, out_dir=out, run_id=run_id)
    try:
        try:
            await stage.open()
            await SCENARIOS[name](stage)
            await stage.settle()
        except Exception as exc:  # a broken scenario is reported, the others still run
            stage.fail(f"the scenario broke: {type(exc).__name__}: {exc}")
        await stage.stop_all()
        await stage.collect()
        return await stage.finish()
    finally:
        await stage.close()


def _dead(dead: dict[str, int]) -> str:
    return ", ".join(f"{reason} {count}" for reason, count in dead.items()) or "0"


def table(outcomes: list[Outcome]) -> str:
    head = (
        "| scenario | callbacks sent | 2xx | other | stored | commands sent | results "
        "| dead letters by reason | at Catapult | redelivered | pending | lost | duplicates |"
    )
    rows = [head, "|" + "---|" * 13]
    for o in outcomes:
        f = o.figures
        rows.append(
            f"| {o.name} | {f.callbacks_sent} | {f.answered_2xx} | {f.answered_other} | "
            f"{f.stored} | {f.commands_sent} | {f.results} | {_dead(f.dead_letters)} | "
            f"{f.at_catapult} | {f.redelivered} | {f.pending} | **{f.lost}** | "
            f"**{f.duplicates}** |"
        )
    return "\n".join(rows)


def report(outcomes: list[Outcome], command: str) -> str:
    lines = ["", "## Chaos: figures", "", f"command: {command}", table(outcomes), "", DEFINITIONS]
    for outcome in outcomes:
        if outcome.is_clean and not outcome.notes:
            continue
        lines.append(f"\n{outcome.name} ({outcome.duration_s:.0f} s):")
        for note in outcome.notes:
            lines.append(f"  - {note}")
        for finding in outcome.findings[:FINDINGS_SHOWN]:
            lines.append(f"  * {finding.kind} {finding.id}: {finding.detail}")
        if len(outcome.findings) > FINDINGS_SHOWN:
            lines.append(f"  * ... and {len(outcome.findings) - FINDINGS_SHOWN} more (report.json)")
        if outcome.findings:
            lines.append(f"  reproduce: uv run --frozen python bench/chaos.py -s {outcome.name}")
    return "\n".join(lines)


async def main_async(args: argparse.Namespace) -> int:
    # The runner's own AMQP clients reconnect through outages on purpose: their logs are noise.
    for noisy in ("aiormq", "aio_pika"):
        logging.getLogger(noisy).setLevel(logging.CRITICAL)
    options = options_from(args)
    names = args.scenario or list(SCENARIOS)
    run_id = uuid.uuid4().hex[:6]
    out = args.out or Path(tempfile.mkdtemp(prefix="bridge-chaos-"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"chaos run {run_id}: {len(names)} scenarios, logs in {out}")
    print(f"machine: {describe()}")
    guard = DefaultNodeGuard()
    print(f"default RabbitMQ node before: {guard.before.describe()}")
    leftover = stop_leftover_node(NODE_NAME)
    if leftover:
        print(leftover)
    node = PrivateNode(
        Path(tempfile.mkdtemp(prefix="bridge-chaos-node-")),
        name=NODE_NAME,
        amqp_port=args.amqp_port,
        dist_port=args.dist_port,
    )
    node.prepare()
    started = time.monotonic()
    outcomes: list[Outcome] = []
    try:
        took = await node.start()
        print(f"RabbitMQ node {NODE_NAME} on 127.0.0.1:{args.amqp_port} started in {took:.1f} s")
        for name in names:
            outcomes.append(await run_one(name, options=options, node=node, out=out, run_id=run_id))
            print(table(outcomes[-1:]).splitlines()[-1], flush=True)
    finally:
        await node.discard(keep_logs_in=out / "rabbitmq")
    untouched, guard_text = guard.check()
    command = "uv run --frozen python bench/chaos.py " + " ".join(sys.argv[1:])
    print(report(outcomes, command.strip()))
    print(f"\n{len(outcomes)} scenarios in {time.monotonic() - started:.0f} s; logs in {out}")
    print(guard_text)
    (out / "report.json").write_text(
        json.dumps(
            [
                {
                    "scenario": o.name,
                    "figures": o.figures.as_dict(),
                    "findings": [vars(f) for f in o.findings],
                    "notes": o.notes,
                    "timeline": o.timeline,
                    "duration_s": round(o.duration_s, 1),
                }
                for o in outcomes
            ],
            indent=2,
        )
    )
    failed = [o.name for o in outcomes if not o.is_clean]
    if failed:
        print(f"FAILED: {', '.join(failed)}")
    return 1 if failed or not untouched else 0


def main() -> int:
    args = parse_args()
    if args.list:
        for name, scenario in SCENARIOS.items():
            print(f"{name:28} {(scenario.__doc__ or '').strip()}")
        return 0
    return asyncio.run(main_async(args))


if __name__ == "__main__":
    raise SystemExit(main())
