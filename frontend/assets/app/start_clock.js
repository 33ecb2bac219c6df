// The start-up banner's clock: what it says and how full its bar is, from the `status` frames of one start.
// It never goes backwards: the deadline only moves earlier (a later one from the server is not shown as
// more time left: past the deadline the banner says the start is taking longer than usual, with the time
// so far), and the bar always moves with time, easing toward 100 % without reaching it.
// Pure (no DOM): tests drive it with their own clock (tests/frontend/test_start_clock_js.py).

const EASE_FROM = 0.8; // the share of the bar filled at the deadline; the rest is eased into past it
const MAX_SHARE = 0.99;

export class StartClock {
  /** A start first seen at `now` (ms). */
  constructor(now) {
    this.startedAt = now;
    this.deadline = null;
    this.usualSeconds = null;
    this.share = 0;
  }

  /** Take one `status` frame of this start (phase, etaSeconds, usualSeconds, elapsedSeconds). */
  update({ etaSeconds, usualSeconds, elapsedSeconds }, now) {
    if (Number.isFinite(elapsedSeconds)) {
      // A tab opened mid-start counts from when the start was asked for, not from when it looked.
      this.startedAt = Math.min(this.startedAt, now - elapsedSeconds * 1000);
    }
    if (Number.isFinite(usualSeconds) && usualSeconds > 0) this.usualSeconds = usualSeconds;
    if (Number.isFinite(etaSeconds)) {
      const deadline = now + etaSeconds * 1000;
      if (this.deadline === null || deadline < this.deadline) this.deadline = deadline;
    }
  }

  /** What the banner shows at `now` (ms): { text, percent, late }. */
  view(now) {
    const elapsed = Math.max(0, Math.round((now - this.startedAt) / 1000));
    if (this.deadline === null) return { text: `${elapsed} s so far`, percent: null, late: false };
    const total = Math.max(1, this.deadline - this.startedAt);
    const done = (now - this.startedAt) / total;
    // Up to the deadline the bar fills in proportion to the time; past it, it eases toward the end.
    const target = done <= 1 ? done * EASE_FROM : EASE_FROM + (MAX_SHARE - EASE_FROM) * (1 - Math.exp(-(done - 1) * 2));
    this.share = Math.min(MAX_SHARE, Math.max(this.share, target));
    const percent = Math.round(this.share * 1000) / 10;
    const left = Math.ceil((this.deadline - now) / 1000);
    if (left > 0) return { text: `about ${left} s left`, percent, late: false };
    const usual = this.usualSeconds ?? Math.round(total / 1000);
    return { text: `taking longer than usual (usually ${usual} s) · ${elapsed} s so far`, percent, late: true };
  }
}
