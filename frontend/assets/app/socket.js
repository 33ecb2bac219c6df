// The chat connection: one WebSocket per tab, reconnected with exponential backoff and full jitter,
// kept alive (and checked) by a heartbeat, with an outbox so that a message typed while offline is sent
// when the connection returns. Each outbox entry keeps its clientMessageId across resends, and the
// server deduplicates on it, so a message is stored once even when an ack was lost with the connection.
//
// Order: the outbox keeps messages in the order they were typed. Each frame names the message typed just
// before it in the same conversation while that one has no ack yet (`after`); the server stores a message
// only after the one it names, and refuses it otherwise (`out_of_order`), and then this tab sends it again
// once that one is acknowledged. So messages sent back to back, whose frames race each other on the
// server, are stored and answered in typed order. Every frame gets an answer (API Gateway sends its own
// error when the function failed): after such an error the frames still in flight are sent again, and
// one that fails several times is reported not sent, so it cannot hold the messages after it back.

const HEARTBEAT_MS = 25_000; // well inside API Gateway's 10-minute idle timeout
const PONG_TIMEOUT_MS = 10_000;
const BACKOFF_BASE_MS = 1_000;
const BACKOFF_MAX_MS = 30_000;
const CONNECT_TIMEOUT_MS = 15_000;
const RESEND_DELAY_MS = 2_000; // after API Gateway said a function failed
const MAX_FAILURES = 4; // then the message is reported not sent, and the ones typed after it go on

/** Delay before reconnect attempt `n` (0-based): full jitter over an exponential ceiling. */
export function backoffDelay(attempt, random = Math.random) {
  const ceiling = Math.min(BACKOFF_MAX_MS, BACKOFF_BASE_MS * 2 ** attempt);
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

export class ChatSocket extends EventTarget {
  /**
   * url: the WebSocket API URL; token: async () => ID token; outboxStore: a Storage for this tab's outbox
   * (sessionStorage: a reload keeps it, another tab has its own).
   */
  constructor({ url, token, outboxStore, outboxKey }) {
    super();
    this.url = url;
    this.token = token;
    this.outboxStore = outboxStore;
    this.outboxKey = outboxKey;
    this.state = "idle";
    this.attempt = 0;
    this.ws = null;
    this.timers = {};
    this.stopped = true;
    this.everOpened = false;
    this.outbox = this.#loadOutbox();
    this.onOnline = () => this.state === "offline" && this.#connectNow();
    this.onVisible = () => document.visibilityState === "visible" && this.onOnline();
  }

  start() {
    this.stopped = false;
    window.addEventListener("online", this.onOnline);
    document.addEventListener("visibilitychange", this.onVisible);
    this.#connect();
  }

  stop() {
    this.stopped = true;
    window.removeEventListener("online", this.onOnline);
    document.removeEventListener("visibilitychange", this.onVisible);
    this.#clearTimers();
    if (this.ws) this.ws.close(1000, "signed out");
    this.ws = null;
    this.#setState("idle");
  }

  /** Messages typed but not yet acknowledged, oldest first. */
  pending() {
    return [...this.outbox.values()];
  }

  /** Queue a user message and send it now if connected. */
  sendMessage({ conversationId, message, clientMessageId }) {
    const entry = { action: "sendMessage", conversationId, message, clientMessageId, queuedAt: Date.now() };
    this.outbox.set(clientMessageId, entry);
    this.#saveOutbox();
    if (this.state === "open") this.#sendEntry(entry);
    return entry;
  }

  /** Send a control frame (getStatus, stop); false when offline (the caller says so). */
  send(frame) {
    if (this.state !== "open") return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /** Reconnect now (a button, or after the tab came back). */
  retryNow() {
    if (this.state !== "open") this.#connectNow();
  }

  #setState(state, detail = {}) {
    if (this.state === state && !detail.force) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...detail } }));
  }

  #connectNow() {
    clearTimeout(this.timers.retry);
    this.attempt = 0;
    this.#connect();
  }

  async #connect() {
    if (this.stopped || this.state === "connecting" || this.state === "open") return;
    this.#setState("connecting");
    let token;
    try {
      token = await this.token();
    } catch (error) {
      // A refused refresh token means signing in again; anything else is a network problem: retry.
      if (error?.code === "SessionExpired" || error?.code === "NotAuthorized") {
        this.dispatchEvent(new CustomEvent("unauthorized"));
        return;
      }
      this.#scheduleRetry();
      return;
    }
    if (this.stopped) return;
    const ws = new WebSocket(`${this.url}?token=${encodeURIComponent(token)}`);
    this.ws = ws;
    this.timers.connect = setTimeout(() => ws.close(), CONNECT_TIMEOUT_MS);
    ws.addEventListener("open", () => {
      clearTimeout(this.timers.connect);
      const reconnected = this.everOpened;
      this.everOpened = true;
      this.attempt = 0;
      this.#setState("open", { reconnected });
      this.#heartbeat();
      for (const entry of this.outbox.values()) this.#sendEntry(entry);
    });
    ws.addEventListener("message", (event) => this.#receive(event.data));
    ws.addEventListener("close", () => {
      if (this.ws !== ws) return;
      clearTimeout(this.timers.connect);
      this.ws = null;
      this.#clearHeartbeat();
      if (!this.stopped) this.#scheduleRetry();
    });
  }

  #scheduleRetry() {
    const delay = backoffDelay(this.attempt++);
    this.#setState("offline", { retryAt: Date.now() + delay, force: true });
    clearTimeout(this.timers.retry);
    this.timers.retry = setTimeout(() => this.#connect(), delay);
  }

  /** The message typed just before `entry` in its conversation, while it has no ack yet. */
  #predecessor(entry) {
    let previous = null;
    for (const other of this.outbox.values()) {
      if (other === entry) return previous;
      if (other.conversationId === entry.conversationId) previous = other;
    }
    return previous;
  }

  #sendEntry(entry) {
    const { action, conversationId, message, clientMessageId } = entry;
    const frame = { action, message, clientMessageId };
    if (conversationId) frame.conversationId = conversationId;
    const previous = this.#predecessor(entry);
    if (previous) frame.after = previous.clientMessageId;
    entry.sent = true;
    entry.waiting = false;
    this.ws.send(JSON.stringify(frame));
  }

  /** Send the first unacknowledged message of a conversation if it was waiting for the one before it. */
  #sendNextOf(conversationId) {
    const first = [...this.outbox.values()].find((e) => e.conversationId === conversationId);
    if (first?.waiting && this.state === "open") this.#sendEntry(first);
  }

  /** A function failed on one of the frames in flight (API Gateway does not say which): all go again. */
  #resendInFlight() {
    this.timers.resend = null;
    if (this.state !== "open") return;
    for (const entry of [...this.outbox.values()].filter((e) => e.sent && !e.waiting)) {
      entry.failures = (entry.failures || 0) + 1;
      if (entry.failures <= MAX_FAILURES) {
        this.#sendEntry(entry);
        continue;
      }
      this.#settle(entry.clientMessageId);
      const { clientMessageId } = entry;
      const error = "The server could not take this message; please send it again.";
      this.dispatchEvent(new CustomEvent("frame", { detail: { type: "error", code: "not_taken", error, clientMessageId } }));
    }
  }

  /** An acked or refused message leaves the outbox; the next one of its conversation may go. */
  #settle(clientMessageId) {
    const entry = this.outbox.get(clientMessageId);
    this.outbox.delete(clientMessageId);
    this.#saveOutbox();
    if (entry) this.#sendNextOf(entry.conversationId);
  }

  #receive(data) {
    let frame;
    try {
      frame = JSON.parse(data);
    } catch {
      return;
    }
    if (frame && typeof frame.type !== "string" && typeof frame.message === "string") {
      // API Gateway's own answer ("Internal server error"): a function failed or timed out on a frame.
      this.timers.resend ??= setTimeout(() => this.#resendInFlight(), RESEND_DELAY_MS);
    }
    if (!frame || typeof frame.type !== "string") return;
    clearTimeout(this.timers.pong);
    if (frame.type === "pong") return;
    if (frame.type === "error" && frame.code === "out_of_order") {
      // Its predecessor is not stored yet: it goes again when that one is acked (maybe already now).
      const entry = this.outbox.get(frame.clientMessageId);
      if (entry) {
        entry.waiting = true;
        this.#sendNextOf(entry.conversationId);
      }
      return;
    }
    if (frame.clientMessageId && (frame.type === "ack" || frame.type === "error")) {
      // Stored (ack) or refused for good (error): either way it must not be sent again.
      this.#settle(frame.clientMessageId);
    }
    this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
  }

  #heartbeat() {
    this.#clearHeartbeat();
    this.timers.ping = setInterval(() => {
      if (this.state !== "open") return;
      this.ws.send(JSON.stringify({ action: "ping" }));
      clearTimeout(this.timers.pong);
      // No answer at all: the connection is dead even if the browser has not noticed.
      this.timers.pong = setTimeout(() => this.ws?.close(), PONG_TIMEOUT_MS);
    }, HEARTBEAT_MS);
  }

  #clearHeartbeat() {
    clearInterval(this.timers.ping);
    clearTimeout(this.timers.pong);
  }

  #clearTimers() {
    this.#clearHeartbeat();
    clearTimeout(this.timers.retry);
    clearTimeout(this.timers.connect);
    clearTimeout(this.timers.resend);
    this.timers.resend = null;
  }

  #loadOutbox() {
    try {
      const saved = JSON.parse(this.outboxStore.getItem(this.outboxKey) || "[]");
      return new Map(saved.filter((e) => e?.clientMessageId).map((e) => [e.clientMessageId, e]));
    } catch {
      return new Map();
    }
  }

  #saveOutbox() {
    try {
      this.outboxStore.setItem(this.outboxKey, JSON.stringify([...this.outbox.values()]));
    } catch {
      // Storage full or disabled: the outbox still works for this page's lifetime.
    }
  }
}
