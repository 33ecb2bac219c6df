"""The bridge process: boot in timed phases, serve /health and /status, drain the Inbox, shut down cleanly.

Boot runs one phase after another, each timed and logged: find this task's ARN (metadata), choose the
model and read its key (secrets), restore OpenClaw's state from S3 (restore), write OpenClaw's config
(config), wait for the compile cache copied since the start (compile-cache), start the gateway (gateway),
connect to it (handshake), wait for the workspace (workspace), dial out to the control plane (dial-out),
wait for the first turn rehearsed meanwhile (rehearsal, only in a task woken without a message); then
TaskState becomes Running and what waited in the Inbox is answered (first-drain).
Shutdown (SIGTERM, POST /shutdown, a `shutdown` frame, or a row that no longer names this task): stop
claiming, finish or abort the current run within the grace period, stop OpenClaw, final backup, TaskState
Idle, exit 0.

`bridge.wiring.production_bridge` is the one place that wires the production collaborators; tests give
`Bridge` fakes.
`bridge.endpoints.create_app` serves it over HTTP.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from bridge import bridge_status, compile_cache, openclaw_home
from bridge.agent_loop import InboxLoop, Runner
from bridge.backups import Backups
from bridge.config import BridgeConfig
from bridge.fence import Fence
from bridge.metrics import BridgeMetrics
from bridge.model_choice import choose_model
from bridge.openclaw_config import ModelChoice, gateway_command
from bridge.openclaw_session import session_key_for
from bridge.parts import Gateway, GatewayConnection, Link, Sync
from bridge.rehearsal import GivingWay, Rehearsal
from bridge.restarts import GatewayRestarts
from bridge.stand_in_model import StandInModel
from bridge.startup import Phases, Progress, StartClock
from bridge.state_sync import RestoreReport
from bridge.telegram_delivery import ChannelDelivery, TelegramDelivery
from bridge.warm_idle import WarmIdle
from serverless_openclaw import protocol, start_estimate
from serverless_openclaw.agent_credentials import hash_agent_token
from serverless_openclaw.lifecycle import LIVE_TASK_ATTRIBUTES, Status
from serverless_openclaw.observability import logger
from serverless_openclaw.store.conversations import ConversationStore
from serverless_openclaw.store.inbox import InboxStore
from serverless_openclaw.store.settings import SettingsStore
from serverless_openclaw.store.task_state import TaskStateStore
from serverless_openclaw.telegram import TelegramClient


class Bridge:
    """One user's agent task: boots OpenClaw, answers the Inbox through it, shuts down cleanly.

    Every collaborator is given; `wiring.production_bridge` wires the production ones. The gateway process,
    its client and the agent link can only be made during boot, so factories are given for them, called
    with the arguments of GatewayProcess, GatewayClient and AgentLink. `on_exit` ends the process.
    """

    def __init__(
        self,
        cfg: BridgeConfig,
        *,
        task_state: TaskStateStore,
        inbox: InboxStore,
        conversations: ConversationStore,
        settings: SettingsStore,
        delivery: ChannelDelivery,
        sync: Sync,
        metrics: BridgeMetrics,
        find_task_arn: Callable[[], Awaitable[str]],
        model_keys: Callable[[str], dict[str, str]],
        telegram_bot: Callable[[], TelegramClient | None],
        make_gateway: Callable[..., Gateway],
        make_gateway_client: Callable[..., GatewayConnection],
        make_link: Callable[..., Link],
        on_exit: Callable[[], None],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.task_state = task_state
        self.inbox = inbox
        self.conversations = conversations
        self.settings = settings
        self.delivery = delivery
        self.sync = sync
        self.metrics = metrics
        self.find_task_arn = find_task_arn
        self.model_keys = model_keys
        self.telegram_bot = telegram_bot
        self.make_gateway = make_gateway
        self.make_gateway_client = make_gateway_client
        self.make_link = make_link
        self.on_exit = on_exit
        self.clock = clock
        self.phases = Phases()
        self.start_clock = StartClock(clock, cfg.start_eta_seconds)
        self.progress = Progress(delivery, inbox, cfg.user_id, clock)
        self.restarts = GatewayRestarts(self.progress, delivery, task_state, cfg.user_id, clock=clock)
        self.task_arn: str | None = None
        self.gateway: Gateway | None = None
        self.gateway_client: GatewayConnection | None = None
        self.link: Link | None = None
        self.loop: InboxLoop | None = None
        self.stand_in: StandInModel | None = None
        self.rehearsal: Rehearsal | None = None
        self.fence: Fence | None = None
        self.ready = False
        self.stopping = False
        self.failure: str | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self.backups = Backups(
            sync, metrics, clock=clock, debounce=cfg.backup_debounce, interval=cfg.backup_interval
        )
        self._stopped = asyncio.Event()

    # ----------------------------------------------------------------------------------------- boot

    async def start(self) -> None:
        """Run every boot phase; on failure release the row so the control plane can retry."""
        try:
            await self._boot()
        except Exception as exc:
            self.failure = f"{type(exc).__name__}: {exc}"[:300]
            logger.exception("bridge failed to start", phase=self.phases.current)
            await self.stop(f"start failed in {self.phases.current}")
            self.on_exit()

    async def _boot(self) -> None:
        """The start-up phases in order; each timed one is logged and later reported as a metric."""
        # The compile cache (thousands of files) is copied while the boot reads from the network, not on
        # the way to the gateway's start.
        seeding = asyncio.create_task(
            asyncio.to_thread(
                compile_cache.seed,
                compile_cache.prepared_dir(self.cfg.openclaw_entry),
                openclaw_home.gateway_tmp(self.cfg),
            ),
            name="compile-cache",
        )
        task_arn = await self._find_task()
        await self._read_start(task_arn)
        choice, api_keys = await self._read_secrets()
        restoring_workspace = await self._restore_state()
        token, env = await self._write_config(choice, api_keys, seeding)
        await self._start_gateway(env)
        runner = await self._connect_gateway(token)
        rehearsal = await self._begin_rehearsal(runner)
        await self._finish_workspace(restoring_workspace)
        loop = self.loop = self._inbox_loop(task_arn, GivingWay(runner, rehearsal))
        await self._dial_out(task_arn)
        await self._finish_rehearsal(rehearsal)
        await self._mark_running(task_arn)
        answered = await self._first_drain(loop)
        self._record_startup(answered)
        self._run_in_background(loop)
        await self.metrics.flush()

    async def _find_task(self) -> str:
        """metadata: this task's ARN, which names it in TaskState and in every claim."""
        async with self.phases.timed("metadata"):
            task_arn = self.task_arn = await self.find_task_arn()
        return task_arn

    async def _read_start(self, task_arn: str) -> None:
        """The start so far (when it was asked for) and the user's recent starts, which the ETAs shown
        from now on are computed from; then the user is told the files are being restored."""
        try:
            state = await asyncio.to_thread(self.task_state.get, self.cfg.user_id)
        except Exception as exc:  # only the ETA suffers: it falls back to the stack's default
            logger.warning("start history not read", error=repr(exc))
        else:
            self.start_clock.read(state)
        self._enter("restoring", task_arn)

    def _enter(self, phase: str, task_arn: str) -> None:
        """Tell the user's tabs and Telegram which start-up phase began, and record it in TaskState."""
        record = functools.partial(
            self.task_state.enter_start_phase, self.cfg.user_id, task_arn, phase, self.clock()
        )
        self.progress.enter(self.start_clock, phase, record)

    async def _read_secrets(self) -> tuple[ModelChoice, dict[str, str]]:
        """secrets: the model and its API key; the Telegram bot when one is configured."""
        async with self.phases.timed("secrets"):
            choice, api_keys = await asyncio.to_thread(self._model_choice)
            self.delivery.telegram = await asyncio.to_thread(self._telegram)
        return choice, api_keys

    async def _restore_state(self) -> asyncio.Task[RestoreReport]:
        """restore: OpenClaw's own state, which it needs to boot. The workspace is only needed by the first
        run: its restore is returned still running, and comes down while OpenClaw boots."""
        async with self.phases.timed("restore"):
            await asyncio.to_thread(self.sync.restore, {"state"})
            workspace = asyncio.create_task(asyncio.to_thread(self.sync.restore, {"workspace"}))
        return workspace

    async def _write_config(
        self, choice: ModelChoice, api_keys: dict[str, str], seeding: asyncio.Future[bool]
    ) -> tuple[str, dict[str, str]]:
        """config: openclaw.json, a fresh gateway token and the gateway's environment (openclaw_home.py),
        the stand-in model the first turn is rehearsed on; compile-cache: the wait for the compile cache,
        prepared when the image was built, to be in the gateway's TMPDIR (its copy began with the boot)."""
        async with self.phases.timed("config"):
            # Below the gateway's port: OpenClaw derives its own helpers' ports above it (browser control +2).
            stand_in = self.stand_in = StandInModel.preferring(max(self.cfg.gateway_port - 1, 0))
            stand_in.start()
            token, env = openclaw_home.prepare(self.cfg, choice, api_keys, stand_in)
        async with self.phases.timed("compile-cache"):
            # Spares the gateway compiling its modules at every boot.
            await seeding
        return token, env

    async def _start_gateway(self, env: Mapping[str, str]) -> None:
        """gateway: OpenClaw as a supervised child, up once its `/readyz` answers 200."""
        cfg = self.cfg
        if self.task_arn is not None:
            self._enter("booting", self.task_arn)
        async with self.phases.timed("gateway"):
            command = gateway_command(cfg.openclaw_node, cfg.openclaw_entry, cfg.gateway_port)
            gateway = self.gateway = self.make_gateway(
                command, env, cwd=cfg.state_root, on_exit=self.restarts.died
            )
            await gateway.start()
            await gateway.wait_until_ready(cfg.gateway_port, timeout=180)

    async def _connect_gateway(self, token: str) -> GatewayConnection:
        """handshake: the bridge's operator connection to OpenClaw, which runs every message."""
        cfg = self.cfg
        async with self.phases.timed("handshake"):
            connection = self.gateway_client = self.make_gateway_client(
                f"ws://127.0.0.1:{cfg.gateway_port}",
                token,
                run_timeout=cfg.run_timeout,
                on_reconnect=self.restarts.back,
            )
            await connection.start()
        return connection

    async def _begin_rehearsal(self, connection: GatewayConnection) -> Rehearsal:
        """The first turn rehearsed on the stand-in model (rehearsal.py), unless a message already waits:
        that message's own turn then loads what the rehearsal would have."""
        rehearsal = self.rehearsal = Rehearsal(connection)
        if not await self._message_waiting():
            rehearsal.begin()
        return rehearsal

    async def _message_waiting(self) -> bool:
        """Whether the user's Inbox holds a message to answer."""
        return bool(await asyncio.to_thread(self.inbox.pending, self.cfg.user_id, self.clock()))

    async def _finish_rehearsal(self, rehearsal: Rehearsal) -> None:
        """rehearsal (only when one began): until it is over, or a message came meanwhile."""
        if rehearsal.outcome == "not begun":
            return
        async with self.phases.timed("rehearsal"):
            await rehearsal.until_done_or(self._message_waiting)
        logger.info("first-turn rehearsal", outcome=rehearsal.outcome)

    async def _finish_workspace(self, restoring: asyncio.Task[RestoreReport]) -> None:
        """workspace: wait for the workspace the restore phase left coming down."""
        async with self.phases.timed("workspace"):
            report = await restoring
            logger.info("workspace restored", files=report.files, bytes=report.bytes, seconds=report.seconds)

    def _inbox_loop(self, task_arn: str, runner: Runner) -> InboxLoop:
        """The loop that answers the user's Inbox through OpenClaw, claiming in this task's name."""
        cfg = self.cfg
        fence = self.fence = Fence(
            user_id=cfg.user_id,
            task_arn=task_arn,
            inbox=self.inbox,
            task_state=self.task_state,
            clock=self.clock,
            lease_seconds=cfg.claim_lease_seconds,
            heartbeat_limit=cfg.heartbeat_stale_seconds,
        )
        return InboxLoop(
            user_id=cfg.user_id,
            claimer=task_arn,
            inbox=self.inbox,
            conversations=self.conversations,
            runner=runner,
            delivery=self.delivery,
            fence=fence,
            session_key_for=session_key_for,
            before_final=functools.partial(self.backups.backup, "answer"),
            clock=self.clock,
            lease_seconds=cfg.claim_lease_seconds,
            max_attempts=cfg.max_message_attempts,
            run_timeout=cfg.run_timeout,
            on_answered=self.backups.due,
        )

    async def _dial_out(self, task_arn: str) -> None:
        """dial-out: a fresh agent token's hash into TaskState, then the agent link that presents it."""
        cfg = self.cfg
        async with self.phases.timed("dial-out"):
            agent_token = secrets.token_urlsafe(32)
            token_hash = hash_agent_token(agent_token)
            if not await asyncio.to_thread(
                self.task_state.register_agent_token, cfg.user_id, task_arn, token_hash
            ):
                raise RuntimeError("TaskState no longer names this task")
            link = self.link = self.make_link(
                cfg.websocket_url,
                user_id=cfg.user_id,
                task_arn=task_arn,
                token=agent_token,
                on_nudge=self._nudge,
                on_abort=self._abort,
                on_shutdown=self._shutdown_requested,
                on_superseded=self._superseded,
                on_alive=self._task_confirmed,
                heartbeat_interval=cfg.heartbeat_interval,
                busy=lambda: bool(self.loop and self.loop.busy),
            )
            await link.start()
            if not await link.wait_connected(30):
                # Messages still get answered (the loop polls the Inbox); nudges resume on reconnect.
                logger.warning("agent connection not up yet, continuing")

    async def _mark_running(self, task_arn: str) -> None:
        """running (not timed): TaskState Running, then the user's web tabs are told."""
        now = self.clock()
        running = await asyncio.to_thread(
            self.task_state.settle_own,
            self.cfg.user_id,
            task_arn,
            Status.RUNNING,
            now,
            from_=(Status.STARTING, Status.RUNNING),
            set_={
                "startAttempts": 0,
                "heartbeatAt": now,
                "busy": False,
                # The next start's ETA: this one's phases join the user's last few.
                "recentStarts": start_estimate.recorded(
                    self.start_clock.history, self.start_clock.durations()
                ),
            },
            remove=("startPhase", "phaseAt"),
        )
        if not running:
            raise RuntimeError("TaskState no longer names this task")
        self._task_confirmed(now)
        self.ready = True
        # A progress frame or edit landing after "running" or the answer's first edit would hide them.
        await self.progress.settled()
        await self.delivery.notice(self.cfg.user_id, protocol.status("running"))
        # From now on an OpenClaw that dies is told as a restart; it should take about as long as at boot.
        durations = self.phases.durations
        self.restarts.arm(
            task_arn,
            durations.get("gateway", 0.0) + durations.get("handshake", 0.0),
            lambda: self.loop.current.item if self.loop and self.loop.current else None,
        )

    async def _first_drain(self, loop: InboxLoop) -> int:
        """first-drain: answer what waited in the Inbox while the task started; how many."""
        async with self.phases.timed("first-drain"):
            answered = await loop.drain()
        return answered

    def _record_startup(self, answered: int) -> None:
        """Log "bridge ready" with every phase's duration, and send them as metrics."""
        logger.info("bridge ready", task_arn=self.task_arn, phases=self.phases.durations, answered=answered)
        for name, seconds in self.phases.durations.items():
            self.metrics.seconds("StartupPhase", seconds, Phase=name)
        self.metrics.seconds("StartupTotal", round(time.monotonic() - self.phases.started, 3))

    def _run_in_background(self, loop: InboxLoop) -> None:
        """From now on: answer on every nudge, heartbeat between link reconnects, back up after runs, and
        stop early if this task was woken without a message and none comes (warm_idle.py)."""
        self._tasks += [
            asyncio.create_task(self._warm_idle().run(), name="warm-idle"),
            asyncio.create_task(loop.run_forever(), name="inbox"),
            asyncio.create_task(self._heartbeat(), name="heartbeat"),
            asyncio.create_task(
                self.backups.run_forever(
                    busy=lambda: bool(self.loop and self.loop.busy), stopping=lambda: self.stopping
                ),
                name="backups",
            ),
        ]

    def _warm_idle(self) -> WarmIdle:
        user_id = self.cfg.user_id

        async def tell(frame: dict[str, object]) -> None:
            await _quietly(self.delivery.notice(user_id, frame))

        return WarmIdle(
            self.task_state,
            user_id,
            self.task_arn or "",
            self.cfg.warm_idle_timeout_minutes,
            clock=self.clock,
            busy=lambda: bool(self.loop and self.loop.busy),
            tell=tell,
            stop=self.on_exit,
        )

    def _model_choice(self) -> tuple[ModelChoice, dict[str, str]]:
        """The model to run (the user's setting when this task can run it, else the task's) and its key."""
        return choose_model(self.cfg, self.settings.get(self.cfg.user_id, "model"), self.model_keys)

    def _telegram(self) -> TelegramDelivery | None:
        """Telegram delivery when the bot is configured (token in SSM); replies still reach the web if not."""
        bot = self.telegram_bot()
        if bot is None:
            logger.info(
                "no telegram bot token configured: telegram replies off",
                parameter=self.cfg.telegram_token_parameter,
            )
            return None
        return TelegramDelivery(bot)

    # ------------------------------------------------------------------------------------ run time

    async def _nudge(self) -> None:
        if self.loop:
            self.loop.nudge()

    async def _abort(self, conversation_id: str | None) -> None:
        loop, gateway_client = self.loop, self.gateway_client
        current = loop.current if loop else None
        if current is None or gateway_client is None:
            return
        if conversation_id and current.item.conversation_id != conversation_id:
            return
        await gateway_client.abort(current.session_key)

    async def _shutdown_requested(self, reason: str = "shutdown requested") -> None:
        logger.info("shutdown requested by the control plane", reason=reason)
        self.on_exit()

    def _task_confirmed(self, at: float) -> None:
        """TaskState named this task as of `at`: the fence may trust it a while longer."""
        if self.fence:
            self.fence.task_confirmed(at)

    @property
    def superseded(self) -> bool:
        """Whether this task learnt that TaskState names another (or none): it may have a replacement."""
        return bool(self.fence and self.fence.superseded)

    async def _superseded(self) -> None:
        logger.warning("TaskState no longer names this task: shutting down")
        if self.fence:
            self.fence.task_lost()
        self.on_exit()

    async def _heartbeat(self) -> None:
        # While the agent link is up its heartbeat frames record liveness (ws_message writes them);
        # between reconnects the bridge writes TaskState itself, so it is never mistaken for dead.
        while not self.stopping:
            await asyncio.sleep(self.cfg.heartbeat_interval)
            if self.link and self.link.connected:
                continue
            now = self.clock()
            try:
                alive = await asyncio.to_thread(
                    self.task_state.heartbeat,
                    self.cfg.user_id,
                    self.task_arn or "",
                    bool(self.loop and self.loop.busy),
                    now,
                )
            except Exception:
                logger.exception("heartbeat failed")
                continue
            if alive:
                self._task_confirmed(now)
            if not alive and not self.stopping:
                await self._superseded()
                return

    async def backup(self, reason: str) -> None:
        """One incremental backup; failures are logged and retried by the next one."""
        await self.backups.backup(reason)

    # ------------------------------------------------------------------------------------ shutdown

    async def stop(self, reason: str) -> None:
        """Graceful stop; safe to call more than once."""
        if self.stopping:
            await self._stopped.wait()
            return
        self.stopping = True
        logger.info("bridge stopping", reason=reason)
        self.restarts.disarm()
        try:
            await self._settle_current_run()
            await self._stop_openclaw()
            # A replaced task keeps its hands off S3: its backup would overwrite the replacement's
            # manifest, and every file it reported to the user was backed up before the report.
            if self.task_arn and self.phases.durations.get("restore") is not None and not self.superseded:
                await self.backup("shutdown")
            if self.task_arn and self.ready:
                # A restart notice still on its way must not land after "idle".
                await self.restarts.settled()
                await self._release_task_state(self.task_arn)
            await self.metrics.flush()
        finally:
            self._stopped.set()

    async def _settle_current_run(self) -> None:
        """Claim nothing more; let the current run finish within the grace period, or abort it."""
        if self.loop:
            self.loop.stop_claiming()
            clean = await self.loop.finish_or_abort(self.cfg.shutdown_grace)
            logger.info("current run settled", clean=clean)

    async def _stop_openclaw(self) -> None:
        """End the background work, both connections and the gateway child."""
        for task in self._tasks:
            task.cancel()
        if self.rehearsal:
            await self.rehearsal.close()
        if self.link:
            await _quietly(self.link.close())
        if self.gateway_client:
            await _quietly(self.gateway_client.close())
        if self.gateway:
            # OpenClaw checkpoints its databases on SIGTERM; the backup comes after.
            await _quietly(self.gateway.stop(timeout=15))
        if self.stand_in:
            self.stand_in.close()

    async def _release_task_state(self, task_arn: str) -> None:
        """TaskState Idle, and the user's web tabs told so.

        Only a bridge that became ready releases: one that never did leaves the row Starting, so its
        STOPPED event counts a failed start and tells the user why (task_events), which is the truth.
        """
        released = await asyncio.to_thread(
            self.task_state.settle_own,
            self.cfg.user_id,
            task_arn,
            Status.IDLE,
            self.clock(),
            from_=(Status.STARTING, Status.RUNNING, Status.STOPPING),
            remove=LIVE_TASK_ATTRIBUTES,
        )
        logger.info("task state released", released=released)
        if released:
            await _quietly(self.delivery.notice(self.cfg.user_id, protocol.status("idle")))

    # -------------------------------------------------------------------------------------- views

    def health(self) -> tuple[bool, str]:
        """(healthy, reason) for ECS's health check (bridge_status.py)."""
        return bridge_status.health(self)

    def status(self) -> dict[str, Any]:
        """What the bridge is doing, for operators (bridge_status.py)."""
        return bridge_status.status(self)


async def _quietly(awaitable: Awaitable[Any]) -> None:
    try:
        await awaitable
    except Exception:
        logger.exception("shutdown step failed")
