// Warm windows in the settings dialog: the hours of chosen weekdays (in the time zone set above) when the
// agent is kept awake, and what that costs a month. The server computes the cost from its one price table
// (POST /api/settings/warm-windows/cost) as the windows are edited, so the figure is never the page's guess.
import { byId, replaceChildren, h } from "./dom.js";

const DAYS = [
  ["mon", "Mon"],
  ["tue", "Tue"],
  ["wed", "Wed"],
  ["thu", "Thu"],
  ["fri", "Fri"],
  ["sat", "Sat"],
  ["sun", "Sun"],
];
const MAX_WINDOWS = 7;
const COST_DELAY_MS = 300;

export class WarmWindowsEditor {
  constructor({ api }) {
    this.api = api;
    this.el = {
      list: byId("warm-windows-list"),
      add: byId("warm-windows-add"),
      cost: byId("warm-windows-cost"),
    };
    this.windows = [];
    this.asked = 0;
    this.el.add.addEventListener("click", () => {
      this.windows.push({ days: ["mon", "tue", "wed", "thu", "fri"], start: "08:00", end: "18:00" });
      this.#render();
      this.#priceSoon();
      this.el.list.querySelector(".warm-window:last-child input")?.focus();
    });
  }

  /** Show the saved windows and their cost. */
  fill(windows) {
    this.windows = (Array.isArray(windows) ? windows : []).map((w) => ({ days: [...w.days], start: w.start, end: w.end }));
    this.#render();
    this.#priceSoon();
  }

  /** The windows as the settings API takes them. */
  value() {
    return this.windows.map((w) => ({ days: DAYS.map(([d]) => d).filter((d) => w.days.includes(d)), start: w.start, end: w.end }));
  }

  /** Mark the windows the server named in a refusal ("warmWindows[1].end"); the reasons as sentences. */
  showProblems(fields) {
    const reasons = [];
    for (const [name, why] of Object.entries(fields || {})) {
      const found = /^warmWindows(?:\[(\d+)\](?:\.(\w+))?)?$/.exec(name);
      if (!found) continue;
      const index = found[1] === undefined ? null : Number(found[1]);
      const row = index === null ? null : this.el.list.children[index];
      row?.querySelector(`[data-part="${found[2] || "days"}"]`)?.setAttribute("aria-invalid", "true");
      reasons.push(index === null ? `Warm windows ${why}.` : `Window ${index + 1}: ${found[2] || "window"} ${why}.`);
    }
    return reasons;
  }

  #render() {
    const rows = this.windows.map((w, index) => this.#row(w, index));
    replaceChildren(this.el.list, rows.length ? rows : h("p.help", {}, "No window: the agent sleeps whenever it is idle."));
    this.el.add.disabled = this.windows.length >= MAX_WINDOWS;
  }

  #row(w, index) {
    const label = `Window ${index + 1}`;
    const changed = () => this.#priceSoon();
    const days = DAYS.map(([day, name]) =>
      h(
        "label.day",
        {},
        h("input", {
          type: "checkbox",
          checked: w.days.includes(day),
          "aria-label": `${label}: ${name}`,
          onchange: (event) => {
            w.days = event.target.checked ? [...w.days, day] : w.days.filter((d) => d !== day);
            changed();
          },
        }),
        ` ${name}`,
      ),
    );
    const time = (part, title) =>
      h("input", {
        type: "time",
        value: w[part] === "24:00" ? "23:59" : w[part],
        "data-part": part,
        "aria-label": `${label}: ${title}`,
        required: true,
        oninput: (event) => {
          // The end of the day is 24:00 to the server; a time input stops at 23:59.
          w[part] = part === "end" && event.target.value === "23:59" ? "24:00" : event.target.value;
          changed();
        },
      });
    return h(
      "div.warm-window",
      { role: "group", "aria-label": label },
      h("div.row", { "data-part": "days" }, days),
      h(
        "div.row",
        {},
        "From ",
        time("start", "from"),
        " to ",
        time("end", "until"),
        h(
          "button",
          {
            type: "button",
            onclick: () => {
              this.windows.splice(index, 1);
              this.#render();
              this.#priceSoon();
            },
          },
          `Remove window ${index + 1}`,
        ),
      ),
    );
  }

  #priceSoon() {
    clearTimeout(this.pending);
    this.el.cost.textContent = "Working out the cost…";
    this.pending = setTimeout(() => this.#price(), COST_DELAY_MS);
  }

  async #price() {
    const asked = ++this.asked;
    for (const el of this.el.list.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
    try {
      const cost = await this.api.warmWindowsCost(this.value());
      if (asked !== this.asked) return; // a later edit is being priced
      this.el.cost.textContent = describe(cost);
    } catch (error) {
      if (asked !== this.asked) return;
      const reasons = error.fields ? this.showProblems(error.fields) : [];
      this.el.cost.textContent = reasons.length ? reasons.join(" ") : `Could not work out the cost: ${error.message}`;
    }
  }
}

function describe(cost) {
  if (!cost.hoursPerMonth) return "No window, no extra cost: the agent runs only while you use it.";
  const dollars = cost.dollarsPerMonth.toFixed(2);
  const { vcpu, memoryGb } = cost.task;
  return (
    `Kept awake about ${Math.round(cost.hoursPerMonth)} hours a month: about $${dollars} a month ` +
    `(${vcpu} vCPU, ${memoryGb} GB on Fargate Spot at $${cost.dollarsPerHour} an hour; ` +
    `${cost.pricesSource}, ${cost.pricesAsOf}). Hours you chat outside the windows come on top.`
  );
}
