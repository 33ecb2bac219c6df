// The conversation list, the open conversation's messages (history paged in as the user scrolls up,
// replies streamed in live), the composer and the stop button.
import { byId, h, relativeTime, replaceChildren, ulid } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

const PAGE = 30;
const STATE_LABELS = {
  queued: "Waiting for the connection…",
  sending: "Sending…",
  sent: "",
  streaming: "Answering…",
  done: "",
  stopped: "Stopped",
  error: "",
};

export class ChatView {
  constructor({ api, socket, notify, onActivity }) {
    this.api = api;
    this.socket = socket;
    this.notify = notify;
    this.onActivity = onActivity;
    this.conversations = new Map();
    this.conversationCursor = null;
    this.currentId = null;
    this.messages = new Map(); // key → message model of the open conversation
    this.historyCursor = null;
    this.historyLoaded = false;
    this.loadingHistory = false;
    this.renderQueued = new Set();
    this.listing = null; // a conversation listing in flight
    this.agentRunning = false; // from the status frames: a reply can be stopped only on a running agent
    this.early = new Map(); // replyTo → a `thinking` frame that came before its message's ack
    this.el = {
      list: byId("conversation-list"),
      more: byId("conversations-more"),
      empty: byId("conversations-empty"),
      title: byId("conversation-title"),
      scroller: byId("messages"),
      messageList: byId("message-list"),
      sentinel: byId("history-sentinel"),
      historyStatus: byId("history-status"),
      emptyConversation: byId("empty-conversation"),
      form: byId("composer"),
      input: byId("composer-input"),
      send: byId("send"),
      stop: byId("stop-reply"),
      newConversation: byId("new-conversation"),
      sidebar: byId("sidebar"),
      sidebarToggle: byId("sidebar-toggle"),
    };
    this.#wire();
  }

  #wire() {
    const { form, input, stop, newConversation, more, sidebarToggle } = this.el;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.send();
    });
    input.addEventListener("keydown", (event) => {
      if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
        event.preventDefault();
        this.send();
      }
    });
    input.addEventListener("input", () => this.#autosize());
    stop.addEventListener("click", () => this.stopReply());
    newConversation.addEventListener("click", () => this.open(null));
    more.addEventListener("click", () => this.loadConversations({ more: true }));
    sidebarToggle.addEventListener("click", () => this.#toggleSidebar());
    // A banner appearing above the list (the agent waking up, a notice) shrinks it: a list that was
    // scrolled to its end stays there, so the message just sent is never pushed out of sight.
    const { scroller } = this.el;
    this.pinned = true;
    scroller.addEventListener("scroll", () => (this.pinned = this.#atBottom()), { passive: true });
    new ResizeObserver(() => {
      if (this.pinned) scroller.scrollTop = scroller.scrollHeight;
    }).observe(scroller);
    this.el.sidebar.addEventListener("keydown", (event) => {
      if (event.key === "Escape" && document.body.classList.contains("sidebar-open")) {
        this.#toggleSidebar(false);
        sidebarToggle.focus();
      }
    });
    new IntersectionObserver((entries) => {
      if (entries.some((e) => e.isIntersecting)) this.loadOlder();
    }, { root: this.el.scroller, rootMargin: "200px 0px 0px 0px" }).observe(this.el.sentinel);
    window.addEventListener("hashchange", () => {
      const id = conversationFromHash();
      if (id !== this.currentId) this.open(id, { fromHash: true });
    });
    this.socket.addEventListener("frame", (event) => this.#onFrame(event.detail));
    // "Stop this reply" applies only on a running agent: while it starts there is no reply to stop yet,
    // and the server ignores the request (the top bar's "Stop the agent" is what applies then).
    this.socket.addEventListener("frame", ({ detail: frame }) => {
      if (frame.type === "status" || (frame.type === "ack" && frame.status)) {
        this.agentRunning = frame.status === "running";
        this.#updateStop();
      }
    });
    this.socket.addEventListener("state", (event) => {
      const { state, reconnected } = event.detail;
      if (state === "open" && reconnected) this.refresh();
      this.#refreshPendingLabels();
    });
  }

  /** First load: the conversation list and the conversation named in the URL, or the latest one. */
  async start() {
    await this.loadConversations();
    const fromHash = conversationFromHash();
    const latest = [...this.conversations.values()][0]?.conversationId ?? null;
    await this.open(fromHash && this.conversations.has(fromHash) ? fromHash : fromHash || latest);
    this.#restoreOutbox();
  }

  /** After a reconnect: whatever happened while offline (replies, other tabs, Telegram). */
  async refresh() {
    await this.loadConversations();
    if (this.currentId && !this.conversations.get(this.currentId)?.local) await this.#loadLatest();
  }

  async loadConversations({ more = false } = {}) {
    try {
      const page = await this.api.conversations(more ? this.conversationCursor : undefined);
      if (!more) {
        // Conversations started here whose first message the server has not stored yet stay listed.
        for (const [id, c] of this.conversations) if (!c.local) this.conversations.delete(id);
      }
      for (const item of page.items) this.conversations.set(item.conversationId, item);
      this.conversationCursor = page.nextCursor || null;
      this.#renderConversations();
    } catch (error) {
      this.notify(`Could not load your conversations: ${error.message}`);
    }
  }

  #renderConversations() {
    const items = [...this.conversations.values()].sort((a, b) => (b.updatedAt || 0) - (a.updatedAt || 0));
    replaceChildren(
      this.el.list,
      items.map((c) => {
        const current = c.conversationId === this.currentId;
        const button = h(
          "button.conversation",
          { type: "button", "aria-current": current ? "page" : false, dataset: { id: c.conversationId } },
          h("span.conversation-title", {}, c.title || "Untitled"),
          h("span.conversation-time", {}, c.updatedAt ? relativeTime(c.updatedAt) : ""),
          c.unread ? h("span.unread", { "aria-label": "new reply" }, "●") : null,
        );
        button.addEventListener("click", () => {
          this.open(c.conversationId);
          this.#toggleSidebar(false);
          this.el.input.focus();
        });
        return h("li", {}, button);
      }),
    );
    this.el.more.hidden = !this.conversationCursor;
    this.el.empty.hidden = items.length > 0;
  }

  /** Show a conversation (null: a new, empty one whose id is made when the first message is sent). */
  async open(conversationId, { fromHash = false } = {}) {
    this.currentId = conversationId;
    this.messages.clear();
    this.historyCursor = null;
    this.historyLoaded = !conversationId;
    this.el.messageList.replaceChildren();
    const conversation = conversationId ? this.conversations.get(conversationId) : null;
    if (conversation) conversation.unread = false;
    this.el.title.textContent = conversation?.title || (conversationId ? "Conversation" : "New conversation");
    document.title = `${this.el.title.textContent} · Serverless OpenClaw`;
    if (!fromHash) {
      const hash = conversationId ? `#c=${encodeURIComponent(conversationId)}` : "";
      if (location.hash !== hash) history.replaceState(null, "", hash || location.pathname);
    }
    this.#renderConversations();
    for (const entry of this.socket.pending()) {
      if (entry.conversationId === conversationId) this.#addPending(entry);
    }
    this.#updateEmpty();
    // A conversation the server cannot know yet (started offline here) has no history to fetch.
    if (conversationId && !conversation?.local) await this.#loadLatest();
    this.#scrollToBottom();
  }

  async #loadLatest() {
    const id = this.currentId;
    try {
      const page = await this.api.messages(id, { limit: PAGE });
      if (id !== this.currentId) return;
      if (!this.historyLoaded) {
        this.historyCursor = page.nextCursor || null;
        this.historyLoaded = true;
      }
      const atBottom = this.#atBottom();
      for (const item of page.items) this.#mergeStored(item);
      this.#place();
      if (atBottom) this.#scrollToBottom();
    } catch (error) {
      if (error.status === 404) {
        this.historyLoaded = true; // a brand-new conversation the server has not stored yet
      } else {
        this.notify(`Could not load the messages: ${error.message}`);
      }
    }
    this.#updateHistoryStatus();
    this.#fillViewport();
  }

  /** A first page shorter than the screen cannot be scrolled up: load older pages until it can. */
  #fillViewport() {
    const s = this.el.scroller;
    if (this.historyCursor && s.scrollHeight <= s.clientHeight) this.loadOlder();
  }

  /** Older messages, when the top of the list comes into view. */
  async loadOlder() {
    if (!this.currentId || !this.historyCursor || this.loadingHistory) return;
    const id = this.currentId;
    this.loadingHistory = true;
    this.#updateHistoryStatus();
    const { scroller } = this.el;
    const fromBottom = scroller.scrollHeight - scroller.scrollTop;
    try {
      const page = await this.api.messages(id, { cursor: this.historyCursor, limit: PAGE });
      if (id !== this.currentId) return;
      this.historyCursor = page.nextCursor || null;
      for (const item of page.items) this.#mergeStored(item);
      this.#place();
      scroller.scrollTop = scroller.scrollHeight - fromBottom; // keep what the user was reading in place
    } catch (error) {
      this.notify(`Could not load older messages: ${error.message}`);
      return; // no retry loop: scrolling up again retries
    } finally {
      this.loadingHistory = false;
      this.#updateHistoryStatus();
    }
    this.#fillViewport();
  }

  #updateHistoryStatus() {
    const status = this.el.historyStatus;
    if (this.loadingHistory) status.textContent = "Loading older messages…";
    else if (this.currentId && this.historyLoaded && !this.historyCursor && this.messages.size)
      status.textContent = "Start of the conversation";
    else status.textContent = "";
    status.hidden = !status.textContent;
  }

  /** A stored message from the HTTP API, merged with what is on screen. */
  #mergeStored(item) {
    const existing = this.#find(item.messageId, item.clientMessageId);
    if (existing && (existing.status === "streaming" || existing.status === "sending")) {
      // The live stream is ahead of (or equal to) the stored copy; only the id is learned.
      existing.messageId = item.messageId;
      return;
    }
    const message = existing || { key: `m:${item.messageId}`, role: item.role };
    Object.assign(message, {
      messageId: item.messageId,
      role: item.role,
      content: item.content,
      channel: item.channel,
      createdAt: item.createdAt,
      status: item.state === "aborted" ? "stopped" : item.state ? "error" : "done",
      error: item.state && item.state !== "aborted" ? "This reply ended with an error." : null,
    });
    this.messages.set(message.key, message);
    this.#render(message);
  }

  #find(messageId, clientMessageId) {
    for (const message of this.messages.values()) {
      if (messageId && message.messageId === messageId) return message;
      if (clientMessageId && message.clientMessageId === clientMessageId) return message;
    }
    return null;
  }

  /** Send what is in the composer (queued in the outbox when offline). */
  send() {
    const text = this.el.input.value.trim();
    if (!text) return;
    if (new TextEncoder().encode(text).length > 32 * 1024) {
      this.notify("That message is longer than 32 KB; please shorten it or send it in parts.");
      return;
    }
    if (!this.currentId) {
      this.currentId = ulid();
      history.replaceState(null, "", `#c=${this.currentId}`);
      this.conversations.set(this.currentId, {
        conversationId: this.currentId,
        title: text.split("\n")[0].slice(0, 80),
        updatedAt: Date.now() / 1000,
        local: true,
      });
      this.el.title.textContent = this.conversations.get(this.currentId).title;
      this.historyLoaded = true;
      this.#renderConversations();
    }
    const entry = this.socket.sendMessage({
      conversationId: this.currentId,
      message: text,
      clientMessageId: ulid(),
    });
    this.el.input.value = "";
    this.#autosize();
    this.#addPending(entry);
    this.#scrollToBottom();
    this.onActivity();
  }

  #addPending(entry) {
    if (this.#find(null, entry.clientMessageId)) return;
    const message = {
      key: `c:${entry.clientMessageId}`,
      clientMessageId: entry.clientMessageId,
      role: "user",
      content: entry.message,
      channel: "web",
      status: this.socket.state === "open" ? "sending" : "queued",
      queuedAt: entry.queuedAt,
    };
    this.messages.set(message.key, message);
    this.#render(message);
    this.#place();
    this.#updateEmpty();
  }

  #restoreOutbox() {
    const stray = this.socket.pending().filter((e) => e.conversationId !== this.currentId);
    if (stray.length) this.notify(`${stray.length} unsent message(s) in other conversations will be sent when connected.`);
  }

  #refreshPendingLabels() {
    for (const message of this.messages.values()) {
      if (message.status === "queued" || message.status === "sending") {
        message.status = this.socket.state === "open" ? "sending" : "queued";
        this.#render(message);
      }
    }
  }

  /** Abort the running reply of this conversation. */
  stopReply() {
    if (!this.socket.send({ action: "stop", conversationId: this.currentId })) {
      this.notify("You are offline; the reply cannot be stopped until the connection returns.");
      return;
    }
    this.el.stop.disabled = true;
    this.el.stop.textContent = "Stopping…";
  }

  #onFrame(frame) {
    switch (frame.type) {
      case "ack":
        return this.#onAck(frame);
      case "stream_chunk":
      case "stream_end":
        return this.#onStream(frame);
      case "thinking":
        return this.#onThinking(frame);
      case "error":
        if (frame.messageId) return this.#onStream(frame);
        if (frame.clientMessageId) return this.#onRefused(frame);
        return this.notify(frame.error || "Something went wrong.");
      default:
        return undefined;
    }
  }

  #onAck(frame) {
    const conversation = this.conversations.get(frame.conversationId);
    if (conversation) {
      conversation.updatedAt = Date.now() / 1000;
      delete conversation.local;
    }
    if (frame.conversationId !== this.currentId) return;
    const message = this.#find(frame.messageId, frame.clientMessageId);
    if (!message) return;
    message.messageId = frame.messageId;
    message.status = "sent";
    this.#render(message);
    this.#place();
    this.#updateStop();
    const early = this.early.get(frame.messageId);
    if (early) {
      this.early.delete(frame.messageId);
      this.#onThinking(early);
    }
  }

  #onRefused(frame) {
    const message = this.#find(null, frame.clientMessageId);
    if (!message) return this.notify(frame.error || "A message was refused.");
    message.status = "error";
    message.error = `Not sent: ${frame.error || "refused by the server"}`;
    this.#render(message);
    return undefined;
  }

  /** The agent took a message of this tab's conversation: its reply shows typing until the first text. */
  #onThinking(frame) {
    if (frame.conversationId !== this.currentId) return;
    if (!this.#find(frame.replyTo)) {
      // A running agent may take the message before the tab has its ack (which names its id).
      if (this.early.size > 20) this.early.clear();
      this.early.set(frame.replyTo, frame);
      return;
    }
    if (this.#find(frame.messageId)) return; // text came first (frames may cross): nothing to announce
    const message = { key: `m:${frame.messageId}`, messageId: frame.messageId, role: "assistant", content: "", status: "streaming" };
    this.messages.set(message.key, message);
    const atBottom = this.#atBottom();
    this.#render(message);
    this.#place();
    this.#updateStop();
    if (atBottom) this.#scrollToBottom();
  }

  #onStream(frame) {
    const { conversationId, messageId } = frame;
    if (conversationId !== this.currentId) {
      const conversation = this.conversations.get(conversationId);
      if (!conversation) {
        // Started elsewhere (another tab, Telegram): one listing per burst of frames, not one per chunk.
        this.listing ??= this.loadConversations().finally(() => (this.listing = null));
      } else if (frame.type !== "stream_chunk") {
        conversation.unread = true;
        conversation.updatedAt = Date.now() / 1000;
        this.#renderConversations();
      }
      return;
    }
    let message = this.#find(messageId);
    if (!message) {
      message = { key: `m:${messageId}`, messageId, role: "assistant", content: "", status: "streaming" };
      this.messages.set(message.key, message);
      if (frame.replyTo && !this.#find(frame.replyTo)) this.#loadLatest(); // a message from elsewhere
    }
    if (frame.type === "stream_chunk") {
      if (message.status !== "streaming") return; // a late chunk after the end
      // A rewrite replaces what was streamed (the agent restarted and wrote its reply again).
      message.content = (frame.rewrite ? "" : message.content) + (frame.content || "");
    } else if (frame.type === "stream_end") {
      message.content = frame.content ?? message.content;
      message.status = "done";
    } else {
      message.status = frame.code === "aborted" ? "stopped" : "error";
      message.error = frame.code === "aborted" ? null : frame.error;
    }
    const atBottom = this.#atBottom();
    this.#render(message);
    this.#place();
    this.#updateEmpty();
    this.#updateStop();
    if (atBottom) this.#scrollToBottom();
  }

  /** Whether any reply of the open conversation is still running (the stop button's reason to exist). */
  #running() {
    const messages = [...this.messages.values()];
    if (messages.some((m) => m.status === "streaming")) return true;
    if (!this.agentRunning) return false;
    // A sent message with no reply after it yet: its run may be starting.
    const lastUser = messages.filter((m) => m.role === "user" && m.status === "sent").pop();
    if (!lastUser) return false;
    return !messages.some((m) => m.role === "assistant" && m.messageId > lastUser.messageId);
  }

  #updateStop() {
    const running = this.#running();
    this.el.stop.hidden = !running;
    if (!running) {
      this.el.stop.disabled = false;
      this.el.stop.textContent = "Stop this reply";
    }
  }

  /** Draw one message (coalesced to one paint per frame while it streams). */
  #render(message) {
    if (!message.el) {
      message.el = h("article.message", { "aria-label": message.role === "user" ? "You" : "Agent" });
    }
    if (message.status !== "streaming") {
      // Final states are drawn at once, so heights are right when the scroll position is restored.
      this.renderQueued.delete(message);
      this.#paint(message);
      return;
    }
    if (this.renderQueued.has(message)) return;
    this.renderQueued.add(message);
    requestAnimationFrame(() => {
      if (this.renderQueued.delete(message)) this.#paint(message);
    });
  }

  #paint(message) {
    const { el } = message;
    el.className = `message ${message.role} ${message.status}`;
    el.dataset.key = message.key;
    if (message.messageId) el.dataset.messageId = message.messageId;
    const label = STATE_LABELS[message.status] || "";
    const body =
      message.role === "assistant" ? h("div.body.markdown", {}, renderMarkdown(message.content)) : h("div.body.plain", {}, message.content);
    replaceChildren(
      el,
      h(
        "div.meta",
        {},
        h("span.who", {}, message.role === "user" ? "You" : "Agent"),
        message.channel === "telegram" ? h("span.channel", {}, "via Telegram") : null,
        label ? h("span.state", {}, label) : null,
      ),
      body,
      message.status === "streaming" && !message.content
        ? h("div.typing", { role: "status", "aria-label": "The agent is working on your message" }, h("span"), h("span"), h("span"))
        : null,
      message.error ? h("div.error-note", { role: "note" }, message.error) : null,
    );
  }

  /** Put the message elements in order: stored ones by id (ULIDs sort by time), unsent ones last. */
  #place() {
    const ordered = [...this.messages.values()].sort((a, b) => {
      if (a.messageId && b.messageId) return a.messageId < b.messageId ? -1 : a.messageId > b.messageId ? 1 : 0;
      if (a.messageId) return -1;
      if (b.messageId) return 1;
      return (a.queuedAt || 0) - (b.queuedAt || 0);
    });
    const list = this.el.messageList;
    ordered.forEach((message, index) => {
      if (!message.el) this.#render(message);
      if (list.children[index] !== message.el) list.insertBefore(message.el, list.children[index] || null);
    });
    this.#updateEmpty();
  }

  #updateEmpty() {
    this.el.emptyConversation.hidden = this.messages.size > 0;
  }

  #atBottom(slack = 40) {
    const s = this.el.scroller;
    return s.scrollHeight - s.scrollTop - s.clientHeight < slack;
  }

  #scrollToBottom() {
    requestAnimationFrame(() => {
      this.el.scroller.scrollTop = this.el.scroller.scrollHeight;
    });
  }

  #autosize() {
    const input = this.el.input;
    input.style.height = "auto";
    input.style.height = `${Math.min(input.scrollHeight, 240)}px`;
  }

  #toggleSidebar(open = !document.body.classList.contains("sidebar-open")) {
    document.body.classList.toggle("sidebar-open", open);
    this.el.sidebarToggle.setAttribute("aria-expanded", String(open));
    // preventScroll: the list is still sliding in, and scrolling it into view would shift the page.
    if (open) this.el.newConversation.focus({ preventScroll: true });
  }
}

function conversationFromHash() {
  const match = /^#c=([A-Za-z0-9][A-Za-z0-9_.:-]{0,63})$/.exec(decodeURIComponent(location.hash));
  return match ? match[1] : null;
}
