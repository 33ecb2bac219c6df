// The HTTP API (docs/architecture.md, Protocols): every call carries a fresh Cognito ID token; errors become ApiError with the
// server's reason (never a raw body), so the UI can say what went wrong.

export class ApiError extends Error {
  constructor(status, code, message, fields = null) {
    super(message);
    this.status = status;
    this.code = code;
    this.fields = fields;
  }
}

const READABLE = {
  0: "The server cannot be reached. Check your connection.",
  401: "Your session has ended. Please sign in again.",
  404: "That was not found.",
  413: "That is too large.",
  429: "Too many requests. Please wait a moment.",
  500: "The server had a problem. Please try again.",
  502: "The server had a problem. Please try again.",
  503: "The service is busy. Please try again shortly.",
};

export class Api {
  constructor({ baseUrl, auth, fetch = globalThis.fetch.bind(globalThis) }) {
    this.baseUrl = baseUrl.replace(/\/$/, "");
    this.auth = auth;
    this.fetch = fetch;
    this.onUnauthorized = () => {};
  }

  async request(method, path, body) {
    const token = await this.auth.idToken();
    const init = { method, headers: { Authorization: `Bearer ${token}` } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await this.fetch(`${this.baseUrl}${path}`, init);
    } catch {
      throw new ApiError(0, "network", READABLE[0]);
    }
    if (response.status === 204) return null;
    let data = null;
    try {
      data = await response.json();
    } catch {
      data = null;
    }
    if (response.ok) return data;
    if (response.status === 401) this.onUnauthorized();
    const message = data?.message || READABLE[response.status] || `The request failed (${response.status}).`;
    throw new ApiError(response.status, data?.error || "http", message, data?.fields || null);
  }

  conversations(cursor) {
    return this.request("GET", `/api/conversations${query({ cursor })}`);
  }
  messages(conversationId, { cursor, limit = 30 } = {}) {
    return this.request("GET", `/api/conversations/${encodeURIComponent(conversationId)}/messages${query({ cursor, limit })}`);
  }
  deleteConversation(conversationId) {
    return this.request("DELETE", `/api/conversations/${encodeURIComponent(conversationId)}`);
  }
  settings() {
    return this.request("GET", "/api/settings");
  }
  saveSettings(changes) {
    return this.request("PUT", "/api/settings", changes);
  }
  warmWindowsCost(warmWindows) {
    return this.request("POST", "/api/settings/warm-windows/cost", { warmWindows });
  }
  status() {
    return this.request("GET", "/api/status");
  }
  startAgent() {
    return this.request("POST", "/api/agent/start");
  }
  stopAgent() {
    return this.request("POST", "/api/agent/stop");
  }
  telegramLink() {
    return this.request("GET", "/api/telegram/link");
  }
  telegramLinkCode() {
    return this.request("POST", "/api/telegram/link-code");
  }
  telegramUnlink() {
    return this.request("DELETE", "/api/telegram/link");
  }
}

function query(params) {
  const entries = Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== "");
  return entries.length ? `?${new URLSearchParams(entries.map(([k, v]) => [k, String(v)]))}` : "";
}
