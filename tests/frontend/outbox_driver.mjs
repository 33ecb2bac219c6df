// Drives frontend/assets/app/socket.js under Node for tests/frontend/test_outbox_js.py: what frames the
// outbox sends, and when, as the server acknowledges or refuses them.
// Usage: node outbox_driver.mjs <scenario>; prints one JSON object on stdout.

/** sessionStorage's interface over a Map. */
class MemoryStorage {
  #items = new Map();
  getItem(key) {
    return this.#items.has(key) ? this.#items.get(key) : null;
  }
  setItem(key, value) {
    this.#items.set(key, String(value));
  }
}

/** A WebSocket that records what the page sends; the test plays the server. */
class FakeWebSocket extends EventTarget {
  static last = null;
  constructor(url) {
    super();
    this.url = url;
    this.sent = [];
    FakeWebSocket.last = this;
    queueMicrotask(() => this.dispatchEvent(new Event("open")));
  }
  send(data) {
    this.sent.push(JSON.parse(data));
  }
  close() {}
  receive(frame) {
    this.dispatchEvent(new MessageEvent("message", { data: JSON.stringify(frame) }));
  }
}

globalThis.window = new EventTarget();
globalThis.document = Object.assign(new EventTarget(), { visibilityState: "visible" });
globalThis.WebSocket = FakeWebSocket;

const { ChatSocket } = await import("../../frontend/assets/app/socket.js");

async function openSocket() {
  const socket = new ChatSocket({
    url: "wss://example.invalid/prod",
    token: async () => "token",
    outboxStore: new MemoryStorage(),
    outboxKey: "outbox",
  });
  socket.start();
  await new Promise((resolve) => setTimeout(resolve, 10));
  return socket;
}

const summary = (frame) => ({ id: frame.clientMessageId, after: frame.after ?? null });

const scenarios = {
  // Three messages typed back to back in one conversation and one in another; "b" overtakes "a".
  async overtaken() {
    const socket = await openSocket();
    const ws = FakeWebSocket.last;
    const refused = [];
    socket.addEventListener("frame", (e) => e.detail.type === "error" && refused.push(e.detail.clientMessageId));
    for (const [conversationId, id] of [["c1", "a"], ["c1", "b"], ["c2", "x"], ["c1", "c"]]) {
      socket.sendMessage({ conversationId, message: id, clientMessageId: id });
    }
    const first = ws.sent.map(summary);
    ws.receive({ type: "error", code: "out_of_order", clientMessageId: "b", after: "a", retryable: true });
    ws.receive({ type: "error", code: "out_of_order", clientMessageId: "c", after: "b", retryable: true });
    const whileWaiting = ws.sent.length;
    ws.receive({ type: "ack", clientMessageId: "a", messageId: "M1", conversationId: "c1" });
    const afterAckA = ws.sent.slice(whileWaiting).map(summary);
    ws.receive({ type: "ack", clientMessageId: "b", messageId: "M2", conversationId: "c1" });
    const afterAckB = ws.sent.slice(whileWaiting + afterAckA.length).map(summary);
    socket.stop();
    return { first, whileWaiting, afterAckA, afterAckB, refused, pending: socket.pending().map((e) => e.clientMessageId) };
  },
  // API Gateway says a function failed (it does not say on which frame): the frames in flight go again;
  // one that keeps failing is reported not sent, and the one typed after it goes on.
  async failing() {
    const realSetTimeout = globalThis.setTimeout;
    globalThis.setTimeout = (fn) => realSetTimeout(fn, 1); // the 2 s resend delay, without the wait
    const socket = await openSocket();
    const ws = FakeWebSocket.last;
    const reported = [];
    socket.addEventListener("frame", (e) => e.detail.type === "error" && reported.push(e.detail.code));
    socket.sendMessage({ conversationId: "c1", message: "doomed", clientMessageId: "doomed" });
    socket.sendMessage({ conversationId: "c1", message: "next", clientMessageId: "next" });
    ws.receive({ type: "error", code: "out_of_order", clientMessageId: "next", after: "doomed", retryable: true });
    const sentAfterEachFailure = [];
    for (let i = 0; i < 5; i++) {
      ws.receive({ message: "Internal server error", connectionId: "c", requestId: "r" });
      await new Promise((resolve) => realSetTimeout(resolve, 20));
      sentAfterEachFailure.push(ws.sent.length);
    }
    socket.stop();
    globalThis.setTimeout = realSetTimeout;
    const last = ws.sent.slice(-1).map(summary);
    return { sentAfterEachFailure, last, reported, pending: socket.pending().map((e) => e.clientMessageId) };
  },
};

const scenario = scenarios[process.argv[2]];
if (!scenario) throw new Error(`unknown scenario ${process.argv[2]}`);
process.stdout.write(JSON.stringify(await scenario()));
process.exit(0);
