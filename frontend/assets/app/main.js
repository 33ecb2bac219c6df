// Start-up: read the runtime config.json (one build serves every stack), then either the sign-in form
// or the chat. Nothing here opens a WebSocket before a successful sign-in.
import { Api } from "./api.js";
import { ChatView } from "./chat.js";
import { AuthError, CognitoAuth } from "./cognito.js";
import { byId } from "./dom.js";
import { SettingsDialog } from "./settings.js";
import { ChatSocket } from "./socket.js";
import { AgentStatusView } from "./status.js";
import { IntentWake } from "./wake.js";

const CONFIG_KEYS = ["userPoolId", "userPoolClientId", "cognitoEndpoint", "webSocketUrl", "httpApiUrl"];

async function loadConfig() {
  const response = await fetch("config.json", { cache: "no-store" });
  if (!response.ok) throw new Error(`config.json could not be loaded (HTTP ${response.status})`);
  const config = await response.json();
  const missing = CONFIG_KEYS.filter((key) => typeof config[key] !== "string" || !config[key]);
  if (missing.length) throw new Error(`config.json is missing ${missing.join(", ")}; run scripts/publish_frontend.py again`);
  return config;
}

function show(view) {
  for (const id of ["loading", "signin-view", "chat-view"]) byId(id).hidden = id !== view;
}

function fail(text) {
  const loading = byId("loading");
  loading.textContent = text;
  loading.setAttribute("role", "alert");
  show("loading");
}

function showSignIn(config, auth, { message = null } = {}) {
  show("signin-view");
  const form = byId("signin-form");
  const newPasswordForm = byId("newpassword-form");
  const error = byId("signin-error");
  const submit = byId("signin-submit");
  const username = byId("signin-username");
  const password = byId("signin-password");
  form.hidden = false;
  newPasswordForm.hidden = true;
  setError(error, message);
  (username.value ? password : username).focus();

  form.onsubmit = async (event) => {
    event.preventDefault();
    if (!username.value.trim() || !password.value) {
      setError(error, "Enter your email (or username) and password.");
      (username.value.trim() ? password : username).focus();
      return;
    }
    setError(error, null);
    submit.disabled = true;
    submit.textContent = "Signing in…";
    try {
      const result = await auth.signIn(username.value.trim(), password.value);
      password.value = "";
      if (result.status === "newPasswordRequired") askNewPassword(config, auth, result);
      else startChat(config, auth);
    } catch (failure) {
      setError(error, failure instanceof AuthError ? failure.message : "Signing in failed unexpectedly. Please try again.");
      password.select();
      password.focus();
    } finally {
      submit.disabled = false;
      submit.textContent = "Sign in";
    }
  };
}

function askNewPassword(config, auth, challenge) {
  byId("signin-form").hidden = true;
  const form = byId("newpassword-form");
  const error = byId("newpassword-error");
  const first = byId("newpassword-password");
  const second = byId("newpassword-confirm");
  const submit = byId("newpassword-submit");
  form.hidden = false;
  first.focus();
  form.onsubmit = async (event) => {
    event.preventDefault();
    if (first.value.length < 8) return setError(error, "The new password must have at least 8 characters.");
    if (first.value !== second.value) return setError(error, "The two passwords differ.");
    setError(error, null);
    submit.disabled = true;
    try {
      await challenge.complete(first.value);
      first.value = second.value = "";
      startChat(config, auth);
    } catch (failure) {
      setError(error, failure instanceof AuthError ? failure.message : "The password could not be changed.");
    } finally {
      submit.disabled = false;
    }
    return undefined;
  };
}

function setError(el, text) {
  el.textContent = text || "";
  el.hidden = !text;
}

function startChat(config, auth) {
  show("chat-view");
  const user = auth.user;
  const api = new Api({ baseUrl: config.httpApiUrl, auth });
  const socket = new ChatSocket({
    url: config.webSocketUrl,
    token: () => auth.idToken(),
    outboxStore: sessionStorage,
    outboxKey: `openclaw.outbox.${user?.sub || "me"}`,
  });
  const notice = byId("notice");
  const notify = (text) => {
    byId("notice-text").textContent = text;
    notice.hidden = false;
  };
  byId("notice-close").onclick = () => (notice.hidden = true);
  const status = new AgentStatusView({ api, socket, notify });
  const chat = new ChatView({ api, socket, notify, onActivity: () => (notice.hidden = true) });
  const wake = new IntentWake({ socket, input: byId("composer-input") });
  new SettingsDialog({ api, onWakeSetting: (on) => wake.setEnabled(on) });
  watchConnection(socket);

  const signOut = async (message) => {
    socket.stop();
    await auth.signOut();
    sessionStorage.setItem("openclaw.signin-message", message || "");
    history.replaceState(null, "", location.pathname);
    location.reload();
  };
  api.onUnauthorized = () => signOut("Your session has ended. Please sign in again.");
  socket.addEventListener("unauthorized", () => signOut("Your session has ended. Please sign in again."));
  byId("signout").onclick = () => signOut("");
  auth.onChange(() => {
    if (!auth.signedIn) location.reload(); // signed out in another tab
  });

  socket.start();
  // Read alongside the socket's opening: the page-open wake goes once both the status and this are known.
  api.settings().then(
    (settings) => wake.setEnabled(settings.wakeOnIntent),
    () => wake.settingsUnavailable(),
  );
  status.load();
  chat.start();
  byId("composer-input").focus();
}

function watchConnection(socket) {
  const pill = byId("connection");
  const banner = byId("offline-banner");
  const text = byId("offline-text");
  byId("reconnect-now").onclick = () => socket.retryNow();
  let countdown = null;
  socket.addEventListener("state", (event) => {
    const { state, retryAt } = event.detail;
    pill.dataset.state = state;
    clearInterval(countdown);
    if (state === "open") {
      pill.textContent = "Online";
      banner.hidden = true;
      return;
    }
    if (state === "connecting") {
      pill.textContent = "Connecting…";
      return;
    }
    pill.textContent = "Offline";
    banner.hidden = false;
    const pending = socket.pending().length;
    const queued = pending ? ` ${pending} message(s) will be sent when the connection returns.` : "";
    const tick = () => {
      const seconds = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
      text.textContent = `You are offline. Reconnecting${seconds ? ` in ${seconds} s` : "…"}.${queued}`;
    };
    tick();
    countdown = setInterval(tick, 1000);
  });
}

async function main() {
  let config;
  try {
    config = await loadConfig();
  } catch (error) {
    fail(`The chat cannot start: ${error.message}`);
    return;
  }
  const auth = new CognitoAuth({
    endpoint: config.cognitoEndpoint,
    userPoolId: config.userPoolId,
    clientId: config.userPoolClientId,
  });
  const message = sessionStorage.getItem("openclaw.signin-message");
  sessionStorage.removeItem("openclaw.signin-message");
  if (auth.signedIn) startChat(config, auth);
  else showSignIn(config, auth, { message });
}

main();
