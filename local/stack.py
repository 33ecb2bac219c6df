"""The whole product on one machine: `python -m local up` (what `make dev` runs).

Reads `template.yaml` and stands in for every AWS service it uses, on loopback:

  web      the web chat (a build of `frontend/`), its runtime `config.json`, Cognito's SRP front
  http     the HTTP API (JWT authorizer, CORS, payload 2.0 events)
  ws       the WebSocket API and its `@connections` management API
  aws      moto's server: DynamoDB, S3, SSM, Cognito, Scheduler, CloudWatch, … (state kept in `.local/`)
  ecs      the ECS API and task metadata endpoint; each task is a real bridge + OpenClaw process

The functions run in this process with the environment the template gives them; the watchdog runs on
the template's schedule, and the schedules kept in moto's EventBridge Scheduler fire their targets
(local/scheduler.py; `/_local/scheduler` on the web port shows them and moves their clock forward).
Ctrl-C stops the agents gracefully (their final backup), then saves the state.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import shutil
import signal
import socket
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import uvicorn

from local.aws import DEMO_USERNAME, EmbeddedAws, StateError, User
from local.buildah import Buildah, ImageError, cache_folder
from local.cognito import cognito_app
from local.console import Console, banner, configure_logging
from local.ecs import EcsStandIn
from local.ecs_task import Task
from local.events import Schedules
from local.fargate import ContainerRuntime, HostProcess, image_entrypoint, kill_leftovers
from local.functions import FunctionHost
from local.http_api import HttpApi
from local.http_server import server_config
from local.image_containers import ImageContainers
from local.offline_model import OfflineModelServer, serve
from local.ports import reserve_port
from local.resolve import REGION, Resolver
from local.runtime import Runtime, RuntimeInstallError, ensure_compile_cache, ensure_runtime
from local.scheduler import SchedulerEmulation, control_app
from local.signature import ACCESS_KEY_ID, LOCAL_CREDENTIALS, SECRET_ACCESS_KEY
from local.state_directory import StateDirectory
from local.telegram import TelegramSimulator
from local.template import TemplateError, load_template, resources_of_type, table_definitions
from local.web import security_headers, web_app
from local.websocket_api import STAGE, WebSocketApi
from scripts.build_frontend import BuildError
from scripts.build_frontend import build as build_frontend

REPO = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = REPO / ".local"
DEFAULT_PORT_BASE = 8080
SNAPSHOT_SECONDS = 15.0
COGNITO_PATH = "/_local/cognito"
"""Where the web server mounts the SRP-verifying Cognito front (local/cognito.py)."""
SCHEDULER_PATH = "/_local/scheduler"
"""Where the web server mounts the Scheduler's clock and overview (local/scheduler.py)."""
SERVICES = ("web", "http", "ws", "aws", "ecs", "telegram")


class StackError(Exception):
    """The local stack cannot start; the message says what to do."""


@dataclass
class Options:
    """How `python -m local up` was asked to run."""

    state_dir: Path = DEFAULT_STATE_DIR
    port_base: int = DEFAULT_PORT_BASE
    schedule_every: float | None = None
    model: str = "auto"  # auto | offline
    parameters: dict[str, str] = field(default_factory=dict)
    stack_name: str = "local"
    runtime_dir: Path | None = None
    gateway_command: tuple[str, str] | None = None
    """(program, entry) run instead of the pinned OpenClaw: for benchmarks that isolate our own share."""
    bridge_image: str | None = None
    """Run each task's container inside this image (`python -m local.image build`) with buildah."""


@dataclass(frozen=True)
class ModelSetup:
    """Which model the agent uses and how the banner describes it."""

    provider: str
    description: str
    secret: tuple[str, str] | None = None  # (parameter name under the secrets prefix, value)


def choose_model(options: Options, environ: dict[str, str]) -> ModelSetup:
    """A real provider when its API key is in the environment (unless --model offline), else offline."""
    if options.model == "offline":
        return ModelSetup("offline", "offline model (built in, no network; --model offline)")
    if environ.get("ANTHROPIC_API_KEY", "").strip():
        return ModelSetup(
            "anthropic",
            "Anthropic (ANTHROPIC_API_KEY from your environment, stored in the local SSM)",
            ("anthropic-api-key", environ["ANTHROPIC_API_KEY"].strip()),
        )
    if environ.get("OPENAI_API_KEY", "").strip():
        return ModelSetup(
            "openai",
            "OpenAI (OPENAI_API_KEY from your environment, stored in the local SSM)",
            ("openai-api-key", environ["OPENAI_API_KEY"].strip()),
        )
    return ModelSetup(
        "offline",
        "offline model (built in, no network; set ANTHROPIC_API_KEY or OPENAI_API_KEY for a real one)",
    )


def point_apis_at(resolver: Resolver, websocket_base: str, http_api_base: str) -> None:
    """Make every execute-api URL of the template's APIs resolve to the loopback servers standing in."""
    for logical_id in resources_of_type(resolver.template, "AWS::ApiGatewayV2::Api"):
        resolver.api_endpoints[resolver.physical_id(logical_id)] = (
            websocket_base,
            websocket_base.replace("http://", "ws://"),
        )
    for logical_id in resources_of_type(resolver.template, "AWS::Serverless::HttpApi"):
        resolver.api_endpoints[resolver.physical_id(logical_id)] = (http_api_base, http_api_base)


def aws_environment(aws_url: str, ecs_url: str, user_pool_id: str, state_dir: Path) -> dict[str, str]:
    """What points boto3 (functions and bridges) at the stand-ins, with throwaway credentials."""
    return {
        "AWS_ENDPOINT_URL": aws_url,
        "AWS_ENDPOINT_URL_ECS": ecs_url,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        # A person's ~/.aws config must not redirect or sign anything the local stack does.
        "AWS_CONFIG_FILE": str(state_dir / "no-aws-config"),
        "AWS_SHARED_CREDENTIALS_FILE": str(state_dir / "no-aws-credentials"),
        # moto signs ID tokens with its own key; API Gateway and ws_connect fetch it from moto.
        "COGNITO_JWKS_URL": f"{aws_url}/{user_pool_id}/.well-known/jwks.json",
    }


def bind(port: int, service: str) -> socket.socket:
    """A listening loopback socket; StackError naming the port and the fix when it is taken."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise StackError(
                f"port {port} ({service}) is already in use (another `make dev`?). Stop what uses it, or "
                "move the whole stack: `make dev PORT_BASE=9080` (web on 9080, the APIs on 9081-9084), or "
                "`python -m local up --port-base 0` for any free ports"
            ) from None
        raise StackError(f"cannot listen on 127.0.0.1:{port} ({service}): {exc.strerror}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


class LocalStack:
    """Everything `python -m local up` runs, started and stopped in order."""

    def __init__(self, options: Options, console: Console) -> None:
        self.options = options
        self.say = console
        self.state_dir = options.state_dir
        self.logs_dir = self.state_dir / "logs"
        self.template = load_template()
        self.sockets: dict[str, socket.socket] = {}
        self.servers: list[uvicorn.Server] = []
        self.background: list[asyncio.Task[None]] = []
        self.model_server: OfflineModelServer | None = None
        self.stopping = asyncio.Event()
        self.state = StateDirectory(self.state_dir)

    # ------------------------------------------------------------------------------------ start

    def _ports(self) -> dict[str, int]:
        base = self.options.port_base
        return {service: (0 if base == 0 else base + i) for i, service in enumerate(SERVICES)}

    async def start(self) -> None:
        """Bring everything up; StackError with a fix when something is in the way."""
        if not self.state.take():
            raise StackError(
                f"another local stack is already running with the state in {self.state_dir}; stop it first "
                "(Ctrl-C in its terminal)"
            )
        self.logs_dir.mkdir(parents=True, exist_ok=True)
        aws_port = self._listen()
        self.runtime = await asyncio.to_thread(self._runtime)
        self.model = choose_model(self.options, dict(os.environ))
        parameters = {
            "WebOrigin": self.web_url,
            "ModelProvider": self.model.provider,
            # Functions and bridges call the Telegram stand-in, never api.telegram.org.
            "TelegramApiBase": self.telegram_url,
            **self.options.parameters,
        }
        self.resolver = Resolver(self.template, self.options.stack_name, parameter_overrides=parameters)
        webhook_secret = await self._start_aws(aws_port)

        point_apis_at(self.resolver, self.ws_http, self.http_url)
        self.extra_env = aws_environment(self.aws.url, self.ecs_url, self.aws.user_pool_id, self.state_dir)
        os.environ.update(self.extra_env)
        for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            os.environ.pop(name, None)

        self.say("loading the functions of template.yaml …")
        self.functions = FunctionHost(self.resolver, self.extra_env)
        await asyncio.to_thread(self.functions.load_all)
        lost = self._stand_in_for_the_apis_and_ecs()
        self.scheduler = SchedulerEmulation(
            boto3.client("scheduler", endpoint_url=self.aws.url, region_name=REGION),
            self._invoke_target,
            on_failure=lambda message: self.say(f"scheduler: {message}"),
        )
        await self._serve_all()
        # What scripts/telegram_webhook.py does against Telegram: register the webhook with its secret.
        # Imported only now: the script imports the shared package, whose Powertools objects read their
        # settings from the environment when first imported, and that must happen in a function's
        # environment (FunctionHost.load_all above), not before it (tests/local/test_imports.py).
        from scripts.telegram_webhook import ALLOWED_UPDATES, WEBHOOK_CONNECTIONS

        self.telegram.register_webhook(
            f"{self.http_url}/telegram",
            webhook_secret,
            allowed_updates=ALLOWED_UPDATES,
            max_connections=WEBHOOK_CONNECTIONS,
        )
        for task_id in lost:
            # ECS would have reported these tasks' end; task_events settles their users' rows.
            await self.ecs.report_lost(task_id, "the local stack was killed while this task ran")
        schedules = Schedules(
            self.functions,
            self.options.stack_name,
            every=self.options.schedule_every,
            on_failure=lambda exc: self.say(
                f"{exc.logical_id} failed: {exc.reason} (traceback in {self.logs_dir / 'stack.log'})"
            ),
        )
        self.background.extend(schedules.start())
        self.background.append(asyncio.create_task(self.scheduler.run(), name="scheduler"))
        self.background.append(asyncio.create_task(self._snapshots(), name="snapshots"))
        endpoints = self.endpoints()
        self.state.write_endpoints(endpoints)
        self.say.block(banner(endpoints, self.model.description, self.state_dir))

    def _listen(self) -> int:
        """Listen on every service's port (the stack's URLs follow); the port moto will take."""
        ports = self._ports()
        for service in ("web", "http", "ws", "ecs", "telegram"):
            self.sockets[service] = bind(ports[service], service)
        probe = bind(ports["aws"], "aws")
        aws_port = int(probe.getsockname()[1])
        probe.close()
        port = {name: sock.getsockname()[1] for name, sock in self.sockets.items()}
        self.web_url = f"http://127.0.0.1:{port['web']}"
        self.http_url = f"http://127.0.0.1:{port['http']}"
        self.ws_http = f"http://127.0.0.1:{port['ws']}"
        self.ws_url = f"ws://127.0.0.1:{port['ws']}"
        self.ecs_url = f"http://127.0.0.1:{port['ecs']}"
        self.telegram_url = f"http://127.0.0.1:{port['telegram']}"
        return aws_port

    async def _start_aws(self, port: int) -> str:
        """moto with the template's resources, the demo user and the secrets (a fresh Telegram bot's
        among them, where scripts/telegram_webhook.py puts them); the bot's webhook secret."""
        self.say("starting the AWS stand-ins (moto) …")
        self.aws = EmbeddedAws(self.state_dir, port)
        await asyncio.to_thread(self.aws.start)
        await asyncio.to_thread(self.aws.create_resources, self.resolver, self.template)
        self.user: User = await asyncio.to_thread(self.aws.ensure_user, DEMO_USERNAME)
        prefix = f"/{self.options.stack_name}/secrets"
        if self.model.secret:
            await asyncio.to_thread(
                self.aws.put_secret, f"{prefix}/{self.model.secret[0]}", self.model.secret[1]
            )
        if self.model.provider == "offline":
            self.model_server, _ = serve(0)
        self.telegram = TelegramSimulator(
            token=f"{secrets.randbelow(10**9) + 10**9}:{secrets.token_urlsafe(30)}"
        )
        webhook_secret = secrets.token_urlsafe(32)
        await asyncio.to_thread(self.aws.put_secret, f"{prefix}/telegram-bot-token", self.telegram.token)
        await asyncio.to_thread(self.aws.put_secret, f"{prefix}/telegram-webhook-secret", webhook_secret)
        return webhook_secret

    def _stand_in_for_the_apis_and_ecs(self) -> list[str]:
        """The two APIs and ECS, over the loaded functions; the ids of tasks a killed stack left behind."""
        ws_api = next(iter(resources_of_type(self.template, "AWS::ApiGatewayV2::Api")))
        http_api = next(iter(resources_of_type(self.template, "AWS::Serverless::HttpApi")))
        self.websocket_api = WebSocketApi(
            self.resolver, self.functions, ws_api, credentials=LOCAL_CREDENTIALS
        )
        self.http_api = HttpApi(self.resolver, self.functions, http_api, self.extra_env["COGNITO_JWKS_URL"])
        self.ecs = EcsStandIn(
            resolver=self.resolver,
            functions=self.functions,
            tasks_dir=self.state_dir / "tasks",
            logs_dir=self.logs_dir,
            command=image_entrypoint(REPO / "bridge" / "Dockerfile"),
            task_environment=self._task_environment,
            broken_environment=lambda task: {"DATA_BUCKET": f"{self.aws.bucket}-missing"},
            say=self.say,
            credentials=LOCAL_CREDENTIALS,
            runtime=self.container_runtime,
        )
        self.ecs.port = self.sockets["ecs"].getsockname()[1]
        return self._reap_stale_tasks()

    async def _serve_all(self) -> None:
        self._serve("web", self._web_app())
        self._serve("http", self.http_api.app)
        self._serve("ws", self.websocket_api.app)
        self._serve("ecs", self.ecs.app)
        self._serve("telegram", self.telegram.app)
        for server in self.servers:
            while not server.started:
                await asyncio.sleep(0.02)

    async def _invoke_target(self, arn: str, event: Any) -> Any:
        """What EventBridge Scheduler does with a Lambda target: invoke it with the target's Input."""
        return await self.functions.ainvoke(self.functions.by_arn(arn), event)

    def _runtime(self) -> Runtime:
        root = self.options.runtime_dir
        try:
            rt = ensure_runtime(root, say=self.say) if root else ensure_runtime(say=self.say)
        except RuntimeInstallError as exc:
            raise StackError(str(exc)) from None
        if self.options.gateway_command is None:  # once; without it every agent start is only slower
            ensure_compile_cache(rt, say=self.say)
        return rt

    @property
    def container_runtime(self) -> ContainerRuntime:
        """Where tasks' containers run: inside the built image (--bridge-image), else as host processes."""
        if self.options.bridge_image is None:
            return HostProcess(image_entrypoint(REPO / "bridge" / "Dockerfile"), self._image_environment_here)
        try:
            return ImageContainers(Buildah(cache_folder()), self.options.bridge_image)
        except ImageError as exc:
            raise StackError(f"--bridge-image {self.options.bridge_image}: {exc}") from None

    def _image_environment_here(self, task: Task) -> dict[str, str]:
        """The image's ENV (bridge/Dockerfile) with this machine's paths, for a task run as a process."""
        state_root = task.directory / "data"
        state_root.mkdir(parents=True, exist_ok=True)
        env = {name: os.environ[name] for name in ("PATH", "LANG", "LC_ALL", "TZ") if name in os.environ}
        gateway = self.options.gateway_command or (str(self.runtime.node), str(self.runtime.entry))
        env.update(
            {
                "PYTHONPATH": os.pathsep.join([str(REPO / "bridge"), str(REPO / "layers" / "shared")]),
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
                "HOME": str(task.directory / "home"),
                "STATE_ROOT": str(state_root),
                "OPENCLAW_NODE": gateway[0],
                "OPENCLAW_ENTRY": gateway[1],
            }
        )
        return env

    def _task_environment(self, task: Task) -> dict[str, str]:
        """What the task's container gets on top of its image's ENV: task definition + overrides +
        Fargate + local endpoints."""
        env = self.ecs.container_environment()
        for container in task.overrides.get("containerOverrides") or []:
            for pair in container.get("environment") or []:
                env[str(pair["name"])] = str(pair.get("value", ""))
        metadata = f"{self.ecs.url}/v4/{task.task_id}"
        env.update(
            {
                # What Fargate adds. Each task has its own network namespace there; here, free ports.
                "ECS_CONTAINER_METADATA_URI_V4": metadata,
                "ECS_CONTAINER_METADATA_URI": metadata,
                "AWS_EXECUTION_ENV": "AWS_ECS_FARGATE",
                "BRIDGE_PORT": str(self._task_port(task)),
                "OPENCLAW_PORT": str(self._task_port(task)),
                **self.extra_env,
            }
        )
        if self.model_server is not None:
            env["MODEL_BASE_URL"] = self.model_server.url
        return env

    @staticmethod
    def _task_port(task: Task) -> int:
        """A loopback port held for the task until it ends (see local/ports.py)."""
        reservation = reserve_port()
        task.ports.append(reservation)
        return reservation.port

    def _reap_stale_tasks(self) -> list[str]:
        """Task folders left by a stack that was killed (not Ctrl-C): their processes and files go; the
        ids of those tasks."""
        tasks_dir = self.state_dir / "tasks"
        if not tasks_dir.is_dir():
            return []
        lost = []
        for leftover in tasks_dir.iterdir():
            if leftover.is_dir():
                kill_leftovers(leftover)  # the same teardown a stopping task gets
                self.ecs.fargate.runtime.discard(leftover.name)
                shutil.rmtree(leftover, ignore_errors=True)
                lost.append(leftover.name)
        if lost:
            self.say(f"cleaned up {len(lost)} agent task(s) left running by a killed local stack")
        return lost

    def _serve(self, name: str, app: Any) -> None:
        server = _QuietServer(server_config(app))
        self.servers.append(server)
        self.background.append(
            asyncio.create_task(server.serve(sockets=[self.sockets[name]]), name=f"serve-{name}")
        )

    # ------------------------------------------------------------------------------------ web

    def runtime_config(self) -> dict[str, Any]:
        """`/config.json`: how the page finds the APIs and signs in (publish_frontend.py writes the same)."""
        return {
            "region": REGION,
            "userPoolId": self.aws.user_pool_id,
            "userPoolClientId": self.aws.client_id,
            # The SRP-verifying front of moto's Cognito, on the page's own origin.
            "cognitoEndpoint": f"{self.web_url}{COGNITO_PATH}/",
            "webSocketUrl": f"{self.ws_url}/{STAGE}",
            "httpApiUrl": self.http_url,
            "local": True,
        }

    def _web_app(self) -> Any:
        try:
            build = build_frontend(self.state_dir / "web")
        except BuildError as exc:
            raise StackError(str(exc)) from None
        headers = security_headers(self.resolver, ["'self'", self.http_url, self.ws_url])
        return web_app(
            build.root,
            self.runtime_config,
            headers,
            mounts={COGNITO_PATH: cognito_app(self.aws.url), SCHEDULER_PATH: control_app(self.scheduler)},
        )

    async def _snapshots(self) -> None:
        while True:
            await asyncio.sleep(SNAPSHOT_SECONDS)
            await asyncio.to_thread(self.aws.snapshot)

    # ------------------------------------------------------------------------------------ output

    def endpoints(self) -> dict[str, Any]:
        """`.local/endpoints.json`: what scripts and tests need to drive the running stack."""
        return {
            "webUrl": self.web_url,
            "webSocketUrl": f"{self.ws_url}/{STAGE}",
            "httpApiUrl": self.http_url,
            "cognitoEndpoint": self.aws.url,
            "region": REGION,
            "userPoolId": self.aws.user_pool_id,
            "userPoolClientId": self.aws.client_id,
            "username": self.user.username,
            "password": self.user.password,
            "userId": self.user.sub,
            "awsEndpoint": self.aws.url,
            "ecsEndpoint": self.ecs.url,
            "managementEndpoint": f"{self.ws_http}/{STAGE}",
            "telegramUrl": self.telegram_url,
            "telegramApiBase": self.telegram_url,
            "telegramWebhookUrl": f"{self.http_url}/telegram",
            "schedulerUrl": f"{self.web_url}{SCHEDULER_PATH}",
            "stackName": self.options.stack_name,
            "tables": self.extra_tables(),
            "dataBucket": self.aws.bucket,
            "model": self.model.provider,
            # The template parameters this stack resolved with (`invoke` resolves the same way).
            "parameters": self.resolver.parameter_overrides,
            "pid": os.getpid(),
        }

    def extra_tables(self) -> dict[str, str]:
        """Table variable → table name."""
        return {
            env: t.table_name(self.options.stack_name) for env, t in table_definitions(self.template).items()
        }

    # ------------------------------------------------------------------------------------ stop

    async def stop(self) -> None:
        """Stop agents gracefully, then the servers, then save the AWS state."""
        running = self.ecs.running() if hasattr(self, "ecs") else []
        if running:
            self.say(
                f"stopping {len(running)} agent task(s): finishing or re-queuing replies, final backup …"
            )
            await self.ecs.stop_all("local stack stopping")
        if hasattr(self, "websocket_api"):
            await self.websocket_api.close_all()
        for server in self.servers:
            server.should_exit = True
        for task in self.background:
            if not task.get_name().startswith("serve-"):
                task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        if self.model_server is not None:
            self.model_server.shutdown()
        if hasattr(self, "aws"):
            try:
                await asyncio.to_thread(self.aws.stop)
            except StateError as exc:
                self.say(f"error: {exc}")
        self.state.release()


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handling: this process stops the stack in order on SIGINT/SIGTERM."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def run(options: Options, console: Console) -> int:
    """Start the stack, serve until SIGINT/SIGTERM, stop it gracefully; the process exit code."""
    try:
        stack = LocalStack(options, console)
    except TemplateError as exc:
        console(f"error: {exc}")
        return 1
    loop = asyncio.get_running_loop()
    stop_requested = asyncio.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop_requested.set)
    started = time.monotonic()
    try:
        starting = asyncio.create_task(stack.start())
        waiter = asyncio.create_task(stop_requested.wait())
        done, _ = await asyncio.wait({starting, waiter}, return_when=asyncio.FIRST_COMPLETED)
        if starting in done:
            starting.result()
            console(f"ready in {time.monotonic() - started:.1f} s")
            await stop_requested.wait()
        else:
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await starting
        console("stopping …")
        return 0
    except (StackError, StateError, TemplateError) as exc:
        console(f"error: {exc}")
        return 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        # A second Ctrl-C while stopping would lose the final backups: say so instead of dying.
        loop.add_signal_handler(signal.SIGINT, lambda: console("still stopping (final backups) …"))
        held_the_state = stack.state.owned
        await stack.stop()
        loop.remove_signal_handler(signal.SIGINT)
        if held_the_state:  # a stack refused for a directory in use has nothing of its own to report
            console("stopped; the state is kept in " + str(options.state_dir))


def serve_forever(options: Options) -> int:
    """`python -m local up`: console on stdout, everything else in `.local/logs/stack.log`."""
    console = Console(sys.stdout)
    log_stream = configure_logging(options.state_dir / "logs")
    # Powertools loggers and EMF metrics of the in-process functions print to sys.stdout/stderr.
    sys.stdout = log_stream
    sys.stderr = log_stream
    try:
        return asyncio.run(run(options, console))
    finally:
        sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
