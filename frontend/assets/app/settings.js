// The settings dialog: model/provider, idle timeout and time zone (validated by the HTTP API, whose
// reasons are shown beside the form), and linking a Telegram account with a one-time code.
import { byId, replaceChildren, h } from "./dom.js";
import { wakeCostText } from "./wake.js";

export class SettingsDialog {
  constructor({ api, onWakeSetting = () => {} }) {
    this.api = api;
    this.onWakeSetting = onWakeSetting;
    this.el = {
      dialog: byId("settings"),
      form: byId("settings-form"),
      open: byId("settings-open"),
      close: byId("settings-close"),
      error: byId("settings-error"),
      provider: byId("settings-provider"),
      model: byId("settings-model"),
      idle: byId("settings-idle"),
      timezone: byId("settings-timezone"),
      timezones: byId("timezones"),
      save: byId("settings-save"),
      saved: byId("settings-saved"),
      telegramStatus: byId("telegram-status"),
      telegramCode: byId("telegram-code"),
      telegramCommand: byId("telegram-command"),
      telegramExpiry: byId("telegram-expiry"),
      telegramLink: byId("telegram-link"),
      telegramUnlink: byId("telegram-unlink"),
    };
    const { open, close, form, telegramLink, telegramUnlink, dialog } = this.el;
    open.addEventListener("click", () => this.show());
    close.addEventListener("click", () => dialog.close());
    dialog.addEventListener("close", () => {
      clearInterval(this.countdown);
      open.focus();
    });
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.save();
    });
    telegramLink.addEventListener("click", () => this.linkCode());
    telegramUnlink.addEventListener("click", () => this.unlink());
    this.#wakeBlock();
  }

  // --- Wake on open: its own block, saved as soon as it is switched (not by the form's Save button).

  #wakeBlock() {
    this.wakeEl = { box: byId("settings-wake"), cost: byId("settings-wake-cost"), saved: byId("settings-wake-saved") };
    this.wakeEl.box.addEventListener("change", () => this.#saveWake(this.wakeEl.box.checked));
  }

  #showWake(settings) {
    const { box, cost } = this.wakeEl;
    box.checked = settings.wakeOnIntent !== false;
    cost.textContent = wakeCostText(settings.wakeOnIntentCost);
    this.onWakeSetting(box.checked);
  }

  async #saveWake(on) {
    const { box, saved } = this.wakeEl;
    box.disabled = true;
    saved.textContent = "Saving…";
    try {
      this.#showWake(await this.api.saveSettings({ wakeOnIntent: on }));
      saved.textContent = on ? "On: opening the chat wakes your agent." : "Off: your first message wakes your agent.";
    } catch (error) {
      box.checked = !on;
      saved.textContent = `Could not save: ${error.message}`;
    } finally {
      box.disabled = false;
    }
  }

  async show() {
    this.#error(null);
    this.el.saved.textContent = "";
    this.el.dialog.showModal();
    this.#fillTimezones();
    await Promise.all([this.load(), this.loadLink()]);
  }

  async load() {
    try {
      this.#fill(await this.api.settings());
    } catch (error) {
      this.#error(`Could not load the settings: ${error.message}`);
    }
  }

  #fill(settings) {
    // No model stored: the agent runs with the stack's default provider and model.
    const [provider, ...model] = String(settings.model || "/").split("/");
    const providers = settings.supportedProviders || (provider ? [provider] : []);
    replaceChildren(
      this.el.provider,
      h("option", { value: "", selected: !provider }, "The stack's default"),
      providers.map((p) => h("option", { value: p, selected: p === provider }, p)),
    );
    this.el.model.value = model.join("/");
    this.el.idle.value = settings.idleTimeoutMinutes ?? "";
    this.el.timezone.value = settings.timezone || "";
    this.#showWake(settings);
  }

  #fillTimezones() {
    if (this.el.timezones.children.length || typeof Intl.supportedValuesOf !== "function") return;
    replaceChildren(this.el.timezones, Intl.supportedValuesOf("timeZone").map((zone) => h("option", { value: zone })));
  }

  async save() {
    const { provider, model, idle, timezone, save, saved } = this.el;
    const changes = { idleTimeoutMinutes: Number(idle.value), timezone: timezone.value.trim() };
    if (provider.value) changes.model = `${provider.value}/${model.value.trim()}`;
    this.#error(null);
    for (const field of [model, idle, timezone]) field.removeAttribute("aria-invalid");
    save.disabled = true;
    saved.textContent = "Saving…";
    try {
      this.#fill(await this.api.saveSettings(changes));
      saved.textContent = "Saved. The agent uses them from its next start.";
    } catch (error) {
      saved.textContent = "";
      const fields = error.fields || {};
      const targets = { model, idleTimeoutMinutes: idle, timezone };
      for (const name of Object.keys(fields)) targets[name]?.setAttribute("aria-invalid", "true");
      const reasons = Object.entries(fields).map(([name, why]) => `${LABELS[name] || name} ${why}.`);
      this.#error(reasons.length ? reasons.join(" ") : `Could not save: ${error.message}`);
    } finally {
      save.disabled = false;
    }
  }

  async loadLink() {
    try {
      this.#showLink(await this.api.telegramLink());
    } catch (error) {
      this.el.telegramStatus.textContent = `Could not read the Telegram link: ${error.message}`;
    }
  }

  #showLink(link) {
    const { telegramStatus, telegramUnlink, telegramLink, telegramCode } = this.el;
    if (link.linked) {
      const who = link.username ? `@${link.username}` : link.firstName || `user ${link.telegramUserId}`;
      telegramStatus.textContent = `Linked to Telegram ${who}.`;
      telegramCode.hidden = true;
      clearInterval(this.countdown);
    } else {
      telegramStatus.textContent = "Not linked. Get a code and send it to your bot to chat from Telegram.";
      if (link.pendingCode?.code) this.#showCode(link.pendingCode);
    }
    telegramUnlink.hidden = !link.linked;
    telegramLink.textContent = link.linked ? "Link another Telegram account" : "Get a link code";
  }

  async linkCode() {
    this.el.telegramLink.disabled = true;
    try {
      this.#showCode(await this.api.telegramLinkCode());
    } catch (error) {
      this.el.telegramStatus.textContent = `Could not create a code: ${error.message}`;
    } finally {
      this.el.telegramLink.disabled = false;
    }
  }

  #showCode({ code, command, expiresAt, expiresInSeconds }) {
    // Counted on this device's clock from the server's "seconds left" when given (clocks disagree).
    const deadline = Number.isFinite(expiresInSeconds) ? Date.now() + expiresInSeconds * 1000 : expiresAt * 1000;
    const { telegramCode, telegramCommand, telegramExpiry } = this.el;
    telegramCommand.textContent = command || `/link ${code}`;
    telegramCode.hidden = false;
    clearInterval(this.countdown);
    const tick = () => {
      const left = Math.max(0, Math.round((deadline - Date.now()) / 1000));
      telegramExpiry.textContent = left > 0 ? `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}` : "0:00 (expired)";
      if (!left) {
        clearInterval(this.countdown);
        telegramCode.classList.add("expired");
      }
    };
    telegramCode.classList.remove("expired");
    tick();
    this.countdown = setInterval(tick, 1000);
  }

  async unlink() {
    this.el.telegramUnlink.disabled = true;
    try {
      await this.api.telegramUnlink();
    } catch (error) {
      if (error.status !== 404) this.el.telegramStatus.textContent = `Could not unlink: ${error.message}`;
    } finally {
      this.el.telegramUnlink.disabled = false;
    }
    await this.loadLink();
  }

  #error(text) {
    this.el.error.textContent = text || "";
    this.el.error.hidden = !text;
  }
}

const LABELS = { model: "Model", idleTimeoutMinutes: "Idle timeout", timezone: "Time zone", settings: "Settings" };
