// Wake on intent: tell the stack that someone is about to talk, so the agent is awake by the time the
// message is sent. A `warm` frame goes when the page opens (once the socket is open and the status says
// idle) and when the composer is focused or typed into; at most one per DEBOUNCE_MS, never while the agent
// is starting, running or stopping, and never when the user turned it off in Settings (the server refuses
// then too, and its reply says `wake: "off"`). An agent woken so that gets no message stops itself after a
// few minutes (WarmIdleTimeoutMinutes), so a wake nobody follows up costs little.

export const DEBOUNCE_MS = 15_000;

export class IntentWake {
  /** socket: a ChatSocket; input: the composer (focus and input events); now: the clock (tests). */
  constructor({ socket, input, now = () => Date.now(), debounceMs = DEBOUNCE_MS }) {
    this.socket = socket;
    this.now = now;
    this.debounceMs = debounceMs;
    this.enabled = null; // unknown until the settings are read
    this.settingsKnown = false;
    this.status = "unknown";
    this.lastSent = -Infinity;
    this.opened = false; // the page-open wake has been decided
    socket.addEventListener("frame", (event) => this.#frame(event.detail));
    socket.addEventListener("state", (event) => {
      if (event.detail.state !== "open") this.status = "unknown"; // asked again (getStatus) on reconnect
    });
    for (const name of ["focus", "input"]) input.addEventListener(name, () => this.intent());
  }

  /** The user's setting, from the settings API (on load and after each change). */
  setEnabled(on) {
    this.enabled = on !== false;
    this.settingsKnown = true;
    this.#opening();
  }

  /** The settings could not be read: go by the server's answer (it refuses when the setting is off). */
  settingsUnavailable() {
    this.settingsKnown = true;
    this.#opening();
  }

  /** Someone is about to talk: send `warm` when it can help; whether a frame went. */
  intent() {
    if (this.enabled === false || this.status !== "idle" || this.socket.state !== "open") return false;
    const now = this.now();
    if (now - this.lastSent < this.debounceMs) return false;
    if (!this.socket.send({ action: "warm" })) return false;
    this.lastSent = now;
    return true;
  }

  #frame(frame) {
    if (frame.type === "status") {
      if (frame.wake === "off") this.enabled = false;
      this.status = frame.status;
      this.#opening();
    } else if (frame.type === "ack" && frame.status) {
      this.status = frame.status;
    }
  }

  #opening() {
    // The page opened: one wake as soon as the status and the setting are known.
    if (this.opened || !this.settingsKnown || this.status === "unknown") return;
    this.opened = true;
    this.intent();
  }
}

/** The settings dialog's explanation of what a wake nobody follows up costs (from GET /api/settings). */
export function wakeCostText(cost) {
  if (!cost || !Number.isFinite(cost.spotUsd)) return "";
  const month = 30 * cost.spotUsd;
  return (
    `If you then write nothing, it stops itself after ${cost.minutes} min: about ${dollars(cost.spotUsd)} ` +
    `per such wake on Fargate Spot (${dollars(cost.onDemandUsd)} when it falls back to on-demand), ` +
    `so one a day is about ${dollars(month)} a month (list prices of ${cost.pricesAsOf}). ` +
    "Off: the agent starts with your first message, which then waits for it."
  );
}

function dollars(value) {
  return `$${value < 0.01 ? value.toFixed(4) : value.toFixed(2)}`;
}
