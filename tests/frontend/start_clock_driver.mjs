// Drives frontend/assets/app/start_clock.js under Node for tests/frontend/test_start_clock_js.py: the
// start-up banner sampled four times a second while `status` frames arrive at given times.
// Usage: node start_clock_driver.mjs '<json: {"frames": [[atSeconds, frame], …], "until": seconds}>'
import { StartClock } from "../../frontend/assets/app/start_clock.js";

const { frames, until } = JSON.parse(process.argv[2]);
const clock = new StartClock(0);
const samples = [];
let next = 0;
for (let ms = 0; ms <= until * 1000; ms += 250) {
  while (next < frames.length && frames[next][0] * 1000 <= ms) clock.update(frames[next++][1], ms);
  samples.push({ at: ms / 1000, ...clock.view(ms) });
}
process.stdout.write(JSON.stringify(samples));
