"""`python -m local …`: the one-machine stack.

up        run the whole product (`make dev`)
reset     delete the local state: users, conversations, agent files (`make dev-reset`)
invoke    run one function of the template against the running local stack (`make invoke`)
install   install Node 24 and the pinned OpenClaw from npm (`make openclaw`)
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path

from local.stack import DEFAULT_PORT_BASE, DEFAULT_STATE_DIR, Options, serve_forever
from local.state_directory import running_stack


def _parameter(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected Name=Value, got {text!r}")
    return name, value


def parser() -> argparse.ArgumentParser:
    """The command line."""
    top = argparse.ArgumentParser(prog="python -m local", description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help="run the whole product on this machine")
    up.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR, help="where state and logs live")
    up.add_argument(
        "--port-base",
        type=int,
        default=int(os.environ.get("PORT_BASE") or DEFAULT_PORT_BASE),
        help="web on this port, then HTTP API, WebSocket API, AWS, ECS and Telegram on the next five "
        "(0: any free ports)",
    )
    up.add_argument(
        "--schedule-every",
        type=float,
        metavar="SECONDS",
        help="run scheduled functions (the watchdog) this often instead of the template's rate",
    )
    up.add_argument(
        "--model",
        choices=("auto", "offline"),
        default="auto",
        help="auto: ANTHROPIC_API_KEY / OPENAI_API_KEY when set, else the offline model",
    )
    up.add_argument(
        "--parameter",
        type=_parameter,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a template parameter (e.g. IdleTimeoutMinutes=1)",
    )

    up.add_argument(
        "--gateway-command",
        nargs=2,
        metavar=("PROGRAM", "ENTRY"),
        help="run `PROGRAM ENTRY gateway run --port N …` instead of the pinned OpenClaw (benchmarks use a "
        "protocol-v4 stand-in to measure the stack's own share of a reply)",
    )

    up.add_argument(
        "--bridge-image",
        metavar="IMAGE",
        help="run each agent task's container inside this image with `buildah run` (its own entrypoint, "
        "the host's loopback) instead of as a process; `python -m local.image build` builds it",
    )

    reset = commands.add_parser("reset", help="delete the local state")
    reset.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)

    invoke = commands.add_parser("invoke", help="run one function against the running local stack")
    invoke.add_argument(
        "function", help="the function's logical id in template.yaml (e.g. WsMessageFunction)"
    )
    invoke.add_argument("-e", "--event", type=Path, required=True, help="event file (see events/)")
    invoke.add_argument("--state-dir", type=Path, default=DEFAULT_STATE_DIR)

    commands.add_parser("install", help="install Node 24 and the pinned OpenClaw from npm")
    return top


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point."""
    args = parser().parse_args(argv)
    if args.command == "up":
        if args.port_base != 0 and not 1024 <= args.port_base <= 65530:
            print("error: --port-base must be 0 or between 1024 and 65530", file=sys.stderr)
            return 2
        return serve_forever(
            Options(
                state_dir=args.state_dir.resolve(),
                port_base=args.port_base,
                schedule_every=args.schedule_every,
                model=args.model,
                parameters=dict(args.parameter),
                gateway_command=tuple(args.gateway_command) if args.gateway_command else None,
                bridge_image=args.bridge_image,
            )
        )
    if args.command == "reset":
        return reset(args.state_dir.resolve())
    if args.command == "invoke":
        from local.invoke import invoke

        return invoke(args.function, args.event, args.state_dir.resolve())
    from local.runtime import main as install

    return install()


def reset(state_dir: Path) -> int:
    """Delete the state directory unless a stack is running on it."""
    if not state_dir.exists():
        print(f"nothing to reset: {state_dir} does not exist")
        return 0
    running = running_stack(state_dir)
    if running is not None:
        print(
            f"error: a local stack is running on {state_dir} (pid {running['pid']}); stop it first",
            file=sys.stderr,
        )
        return 1
    shutil.rmtree(state_dir)
    print(f"deleted {state_dir}: the next `make dev` starts afresh (new demo password, no history)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
