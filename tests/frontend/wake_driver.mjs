// Drives frontend/assets/app/wake.js under Node for tests/frontend/test_wake_js.py: when the page sends
// `warm` frames as the status, the setting, the clock and the composer's events change.
// Usage: node wake_driver.mjs <scenario>; prints one JSON object on stdout.

/** The part of ChatSocket wake.js uses: its state, send, and the frames it receives. */
class FakeSocket extends EventTarget {
  constructor() {
    super();
    this.state = "open";
    this.sent = [];
  }
  send(frame) {
    if (this.state !== "open") return false;
    this.sent.push(frame.action);
    return true;
  }
  receive(frame) {
    this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
  }
  become(state) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state } }));
  }
}

const { IntentWake, wakeCostText } = await import("../../frontend/assets/app/wake.js");

function page({ setting = true } = {}) {
  const socket = new FakeSocket();
  const input = new EventTarget();
  const clock = { now: 1_000_000 };
  const wake = new IntentWake({ socket, input, now: () => clock.now, debounceMs: 15_000 });
  const type = (n = 1) => {
    for (let i = 0; i < n; i++) input.dispatchEvent(new Event(i ? "input" : "focus"));
  };
  return { socket, input, clock, wake, type, setting };
}

const scenarios = {
  // The page opens on an idle agent; then the person types ten times within a second.
  async opening() {
    const { socket, clock, wake, type } = page();
    socket.receive({ type: "status", status: "idle" });
    const beforeSettings = socket.sent.length;
    wake.setEnabled(true);
    const afterOpen = socket.sent.length;
    socket.receive({ type: "status", status: "idle" }); // getStatus again: not a second opening
    clock.now += 500;
    type(10);
    const afterTyping = socket.sent.length;
    clock.now += 15_001;
    type(1);
    return { beforeSettings, afterOpen, afterTyping, afterDebounce: socket.sent.length, frames: socket.sent };
  },
  // While the agent starts or runs, focus and typing send nothing; once it is idle again they do.
  async busy() {
    const { socket, clock, wake, type } = page();
    wake.setEnabled(true);
    socket.receive({ type: "status", status: "running" });
    clock.now += 60_000;
    type(3);
    socket.receive({ type: "status", status: "starting", phase: "provisioning", etaSeconds: 40 });
    clock.now += 60_000;
    type(3);
    const whileUp = socket.sent.length;
    socket.receive({ type: "status", status: "idle" });
    type(1);
    return { whileUp, afterIdle: socket.sent.length };
  },
  // Turned off in Settings: nothing is sent, on open or on typing; the server saying "off" does the same.
  async off() {
    const first = page();
    first.wake.setEnabled(false);
    first.socket.receive({ type: "status", status: "idle" });
    first.clock.now += 60_000;
    first.type(5);
    const second = page();
    second.wake.settingsUnavailable();
    second.socket.receive({ type: "status", status: "idle" });
    const sentBeforeRefusal = second.socket.sent.length;
    second.socket.receive({ type: "status", status: "idle", wake: "off" });
    second.clock.now += 60_000;
    second.type(5);
    return { offSent: first.socket.sent.length, sentBeforeRefusal, afterRefusal: second.socket.sent.length };
  },
  // Offline nothing goes; after reconnecting, nothing until the server has said the status again.
  async offline() {
    const { socket, clock, wake, type } = page();
    wake.setEnabled(true);
    socket.receive({ type: "status", status: "idle" }); // the page-open wake
    clock.now += 60_000;
    socket.become("offline");
    type(2);
    const offline = socket.sent.length;
    socket.become("open");
    type(1);
    const beforeStatus = socket.sent.length;
    socket.receive({ type: "status", status: "idle" });
    type(1);
    return { offline, beforeStatus, afterStatus: socket.sent.length };
  },
  async cost() {
    return {
      text: wakeCostText({ minutes: 3, spotUsd: 0.0008, onDemandUsd: 0.0022, pricesAsOf: "2025-06" }),
      none: wakeCostText(undefined),
    };
  },
};

const run = scenarios[process.argv[2]];
if (!run) {
  console.error(`unknown scenario ${process.argv[2]}`);
  process.exit(2);
}
process.stdout.write(JSON.stringify(await run()));
