// The agent's state at a glance (idle / starting / running / stopping), the start-up banner with its
// phase, a live ETA from the user's own recent starts and a bar that moves with time (start_clock.js),
// and the manual start and stop buttons. A running agent whose OpenClaw restarts is "starting" with
// phase "restarting": the same banner, worded as a restart rather than a wake-up.
import { byId } from "./dom.js";
import { StartClock } from "./start_clock.js";

const LABELS = { idle: "Asleep", starting: "Starting", running: "Running", stopping: "Stopping", unknown: "…" };
const PHASES = {
  provisioning: "finding a machine",
  pulling: "fetching the agent",
  restoring: "restoring your files",
  booting: "starting OpenClaw",
  gateway: "starting OpenClaw", // a bridge of an earlier version
  connecting: "connecting",
  restarting: "OpenClaw stopped unexpectedly",
};
const RESTARTING = "restarting";

export class AgentStatusView {
  constructor({ api, socket, notify }) {
    this.api = api;
    this.socket = socket;
    this.notify = notify;
    this.status = "unknown";
    this.clock = null;
    this.el = {
      pill: byId("agent-status"),
      start: byId("agent-start"),
      stop: byId("agent-stop"),
      banner: byId("starting-banner"),
      title: byId("starting-title"),
      phase: byId("starting-phase"),
      eta: byId("starting-eta"),
      progress: byId("starting-progress"),
    };
    this.el.start.addEventListener("click", () => this.#request("start"));
    this.el.stop.addEventListener("click", () => this.#request("stop"));
    socket.addEventListener("frame", (event) => {
      const frame = event.detail;
      if (frame.type === "status") this.show(frame);
      else if (frame.type === "ack" && frame.status) {
        // An ack names no phase: when it says something new (OpenClaw restarting, say), ask which.
        if (frame.status !== this.status) socket.send({ action: "getStatus" });
        this.show({ status: frame.status });
      }
    });
    socket.addEventListener("state", (event) => {
      if (event.detail.state === "open") socket.send({ action: "getStatus" });
    });
  }

  async load() {
    try {
      this.show(await this.api.status());
    } catch (error) {
      this.notify(`Could not read the agent's status: ${error.message}`);
    }
  }

  /** Apply a `status` frame (or the /api/status body). */
  show({ status, phase, etaSeconds, usualSeconds, elapsedSeconds, lastError }) {
    const previous = this.status;
    this.status = LABELS[status] ? status : "unknown";
    const { pill, start, stop, banner } = this.el;
    pill.dataset.status = this.status;
    pill.textContent = `Agent: ${LABELS[this.status]}`;
    pill.title = lastError ? `Last start failed: ${lastError}` : "";
    start.hidden = this.status !== "idle";
    stop.hidden = this.status !== "running" && this.status !== "starting";
    start.disabled = stop.disabled = false;
    if (this.status === "starting") {
      // An ack says "starting" without a phase: keep the last phase the server named.
      const nextPhase = phase || (previous !== "starting" ? "provisioning" : this.phase);
      // A restart is a new wait of its own; the phases of one start share one clock.
      if (previous !== "starting" || this.clock === null || (nextPhase === RESTARTING) !== (this.phase === RESTARTING)) {
        this.clock = new StartClock(Date.now());
      }
      this.clock.update({ etaSeconds, usualSeconds, elapsedSeconds }, Date.now());
      this.phase = nextPhase;
      this.el.phase.textContent = PHASES[this.phase] || this.phase;
      const restarting = this.phase === RESTARTING;
      if (restarting) pill.textContent = "Agent: Restarting";
      this.el.title.textContent = restarting ? "Restarting your agent" : "Waking up your agent";
      banner.hidden = false;
      this.#tick();
      clearInterval(this.timer);
      // Four times a second: the bar moves smoothly and the seconds never skip.
      this.timer = setInterval(() => this.#tick(), 250);
    } else {
      banner.hidden = true;
      clearInterval(this.timer);
      this.clock = null;
    }
  }

  #tick() {
    const { eta, progress, banner } = this.el;
    const { text, percent, late } = this.clock.view(Date.now());
    eta.textContent = text;
    banner.dataset.late = String(late);
    if (percent === null) progress.removeAttribute("value");
    else progress.value = percent;
  }

  async #request(action) {
    const button = action === "start" ? this.el.start : this.el.stop;
    button.disabled = true;
    try {
      const body = action === "start" ? await this.api.startAgent() : await this.api.stopAgent();
      if (body?.error) this.notify(body.error);
      this.show(action === "start" && body?.started ? { status: "starting", phase: "provisioning" } : body || {});
      this.socket.send({ action: "getStatus" });
    } catch (error) {
      this.notify(`Could not ${action} the agent: ${error.message}`);
      button.disabled = false;
    }
  }
}
