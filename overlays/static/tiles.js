// One renderer per tile. Every text that came from the app (model names, chat notes in alerts,
// node names in events) is put on the page with textContent, never as HTML: a chat message
// that looks like markup shows as the characters it is.

import { LossChart } from "./chart.js";

// The camera index of each camera tile (FRAME_HEADER's first byte, CAMERAS in server.py).
const CAMERA_OF_TILE = { hood: 0, convcam: 1, camera: 2 };
const ALERT_TITLES = {
  moment: "Moment",
  switch: "Model switch",
  vote: "Vote",
  unstuck: "Unstuck",
  crash_loop: "Crash loop",
  memory: "Memory",
  error: "Error",
};

export function buildTile(spec, element, options) {
  element.classList.add("tile", `tile-${spec.name}`);
  if (spec.name in CAMERA_OF_TILE) return new CameraTile(spec, element);
  const builders = {
    model: ModelTile,
    player: PlayerTile,
    trainer: TrainerTile,
    loss: LossTile,
    alerts: AlertsTile,
  };
  return new builders[spec.name](spec, element, options);
}

// -- helpers ---------------------------------------------------------------------------------

function child(parent, tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  parent.appendChild(node);
  return node;
}

function fixed(value, digits) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "-";
}

function whole(value) {
  return typeof value === "number" && Number.isFinite(value)
    ? Math.round(value).toLocaleString("en-US")
    : "-";
}

// An app identifier as words: "waiting_for_data" -> "waiting for data".
function words(identifier) {
  return String(identifier).replaceAll("_", " ");
}

// The samples the trainer has and needs before it starts, over all its buffers (null when it
// does not wait for any).
function dataProgress(trainer) {
  let have = 0;
  let need = 0;
  for (const fill of Object.values(trainer.buffers)) {
    if (!fill.needed) continue;
    have += Math.min(fill.fill, fill.needed);
    need += fill.needed;
  }
  return need > 0 ? { have, need } : null;
}

// "waiting for data: 1,786 / 1,800 samples", "training", ...
function trainerStatus(trainer) {
  const progress = trainer.status === "waiting_for_data" ? dataProgress(trainer) : null;
  const status = words(trainer.status);
  return progress ? `${status}: ${whole(progress.have)} / ${whole(progress.need)} samples` : status;
}

// "driving batch 0, trainer at 32: new weights at the next reload": the weights the car
// drives with and how far the trainer is ahead of them (viewers ask why the car has not learnt).
function weightsLine(driver, trainer) {
  const driving = `driving batch ${whole(driver.batch)}`;
  if (!trainer || trainer.version !== driver.version) return driving;
  if (trainer.batch > driver.batch) {
    return `${driving}, trainer at ${whole(trainer.batch)}: new weights at the next reload`;
  }
  return `${driving}: the trainer's newest weights`;
}

// 3725 s -> "1:02:05".
function duration(seconds) {
  const total = Math.max(0, Math.floor(seconds));
  const pad = (number) => String(number).padStart(2, "0");
  return `${Math.floor(total / 3600)}:${pad(Math.floor(total / 60) % 60)}:${pad(total % 60)}`;
}

function formatCreated(iso) {
  const date = new Date(iso);
  if (!iso || Number.isNaN(date.getTime())) return "";
  const pad = (number) => String(number).padStart(2, "0");
  return (
    `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} ` +
    `${pad(date.getHours())}:${pad(date.getMinutes())}`
  );
}

// Rows of "label  value" that keep their nodes between updates and only touch what changed.
class Rows {
  constructor(parent) {
    this.table = child(parent, "div", "rows");
    this.rows = new Map();
  }

  set(key, label, value, bar) {
    let row = this.rows.get(key);
    if (!row) {
      const line = child(this.table, "div", "row");
      row = {
        line,
        label: child(line, "span", "label"),
        value: child(line, "span", "value"),
        bar: null,
        seen: true,
      };
      this.rows.set(key, row);
    }
    row.seen = true;
    if (row.label.textContent !== label) row.label.textContent = label;
    if (row.value.textContent !== value) row.value.textContent = value;
    if (bar !== undefined) {
      if (!row.bar) {
        const track = child(row.line, "span", "bar");
        row.bar = { fill: child(track, "span", "bar-fill"), mark: child(track, "span", "bar-mark") };
      }
      setBar(row.bar, bar);
    }
  }

  // Rows not set since the last sweep (a buffer or process that went away) are removed.
  sweep() {
    for (const [key, row] of this.rows) {
      if (!row.seen) {
        row.line.remove();
        this.rows.delete(key);
      } else {
        row.seen = false;
      }
    }
  }
}

// bar: {from, to} in [0, 1] of the track (a centred axis fills from 0.5), mark optional.
function setBar(bar, { from, to, mark }) {
  const left = Math.max(0, Math.min(from, to));
  const right = Math.min(1, Math.max(from, to));
  bar.fill.style.left = `${(left * 100).toFixed(1)}%`;
  bar.fill.style.width = `${((right - left) * 100).toFixed(1)}%`;
  bar.mark.style.display = mark === undefined ? "none" : "block";
  if (mark !== undefined) bar.mark.style.left = `${(Math.min(1, Math.max(0, mark)) * 100).toFixed(1)}%`;
}

function axisBar(value) {
  const clipped = Math.max(-1, Math.min(1, Number.isFinite(value) ? value : 0));
  return { from: 0.5, to: 0.5 + clipped / 2 };
}

// -- camera tiles ----------------------------------------------------------------------------

class CameraTile {
  constructor(spec, element) {
    this.camera = CAMERA_OF_TILE[spec.name];
    this.title = spec.title;
    this.canvas = child(element, "canvas", "camera-canvas");
    this.canvas.width = element.clientWidth;
    this.canvas.height = element.clientHeight;
    // The Convcam's maps are a few pixels each: scaled up sharp, not blurred together.
    this.sharp = spec.name === "convcam";
    this.caption = spec.name !== "camera" ? child(element, "div", "caption", spec.title) : null;
    this.status = child(element, "div", "camera-status", "waiting for the driver");
    this.framed = false;
    // The main tile explains a stream on which no model drives yet (the first run).
    this.firstRun = spec.name === "camera" ? new FirstRunView(element) : null;
  }

  onState(state) {
    const status = state.driver_connected ? "" : this.framed ? "no signal" : "waiting for the driver";
    if (this.status.textContent !== status) this.status.textContent = status;
    // Once a model drove here the first run is over: a driver restarting later is "no signal".
    const driving = this.framed || (state.driver_connected && state.driver);
    if (this.firstRun) this.firstRun.show(driving ? null : state);
    if (this.sharp && this.caption) {
      const caption = convcamCaption(this.title, state.driver && state.driver.convcam);
      if (this.caption.textContent !== caption) this.caption.textContent = caption;
    }
  }

  onFrame(bitmap) {
    const context = this.canvas.getContext("2d");
    const { width, height } = this.canvas;
    // Contain: the whole image, centred, letterboxed with transparency.
    const scale = Math.min(width / bitmap.width, height / bitmap.height);
    const drawWidth = bitmap.width * scale;
    const drawHeight = bitmap.height * scale;
    context.clearRect(0, 0, width, height);
    context.imageSmoothingEnabled = !this.sharp;
    context.drawImage(bitmap, (width - drawWidth) / 2, (height - drawHeight) / 2, drawWidth, drawHeight);
    if (!this.framed && this.firstRun) this.firstRun.show(null);
    this.framed = true;
  }
}

// What is happening while no model drives: collecting (N samples to go before training
// starts), training the first weights, or starting up.
class FirstRunView {
  constructor(parent) {
    this.block = child(parent, "div", "first-run");
    child(this.block, "div", "first-run-title", "Charles is learning to drive");
    this.line = child(this.block, "div", "first-run-line", "");
    this.block.hidden = true;
  }

  show(state) {
    this.block.hidden = state === null;
    if (state === null) return;
    const line = firstRunLine(state.trainer);
    if (this.line.textContent !== line) this.line.textContent = line;
  }
}

function firstRunLine(trainer) {
  if (!trainer) return "starting the trainer";
  const progress = trainer.status === "waiting_for_data" ? dataProgress(trainer) : null;
  if (progress) {
    const left = progress.need - progress.have;
    return (
      `collecting driving examples: ${whole(progress.have)} / ${whole(progress.need)} samples, ` +
      `${whole(left)} to go before training starts`
    );
  }
  if (trainer.batch > 0) {
    return `training the first model: batch ${whole(trainer.batch)}; the car starts with its weights`;
  }
  return words(trainer.status);
}

// "Convcam · block_13_expand · 1,536 kernels": which layer the grid shows (two: two colours).
function convcamCaption(title, convcam) {
  if (!convcam || !convcam.layers || convcam.layers.length === 0) return title;
  const kernels = convcam.kernels ? ` \u00b7 ${whole(convcam.kernels)} kernels` : "";
  return `${title} \u00b7 ${convcam.layers.join(" + ")}${kernels}`;
}

// -- text tiles ------------------------------------------------------------------------------

class ModelTile {
  constructor(spec, element) {
    this.name = child(element, "div", "model-name", "");
    this.details = child(element, "div", "model-details", "");
  }

  onState(state) {
    const { version, created, batch } = state.model;
    const name = version || "no model";
    if (this.name.textContent !== name) this.name.textContent = name;
    const parts = [];
    const when = formatCreated(created);
    if (when) parts.push(`created ${when}`);
    if (batch !== null && batch !== undefined) parts.push(`batch ${whole(batch)}`);
    const details = parts.join(" \u00b7 ");
    if (this.details.textContent !== details) this.details.textContent = details;
  }
}

class PlayerTile {
  constructor(spec, element) {
    element.classList.add("panel");
    child(element, "div", "panel-title", spec.title);
    this.rows = new Rows(element);
    this.stages = new StageGrid(element);
  }

  onState(state) {
    const driver = state.driver;
    if (!driver) {
      this.rows.set("status", "status", "no driver");
      this.rows.sweep();
      this.stages.show({});
      return;
    }
    this.rows.set("model", "model", `${driver.version} @ ${whole(driver.batch)}`);
    for (const [name, value] of Object.entries(driver.predictions)) {
      this.rows.set(`prediction:${name}`, name, fixed(value, 3), axisBar(value));
    }
    for (const [name, value] of Object.entries(driver.pad)) {
      this.rows.set(`pad:${name}`, `pad ${name}`, fixed(value, 3), axisBar(value));
    }
    // Paired as on the terminal's Player Console, so the stage times below fit the tile.
    this.rows.set("rates", "FPS / PPS", `${fixed(driver.fps, 1)} / ${fixed(driver.pps, 1)}`);
    const distance = `${fixed(driver.distance_m / 1000, 2)} km`;
    this.rows.set("progress", "unstucks / distance", `${whole(driver.unstucks)} / ${distance}`);
    this.rows.sweep();
    this.stages.show(driver.stages || {});
  }
}

// Where a turn of the driver's loop spends its time: two stages a line, "name p50 / p95" in ms,
// under one heading, so eight stages take four short lines of the Player tile.
class StageGrid {
  constructor(parent) {
    this.block = child(parent, "div", "stages");
    child(this.block, "div", "stages-title", "stage times, ms p50 / p95");
    this.grid = child(this.block, "div", "stage-grid");
    this.values = new Map();
    this.order = null;
    this.block.hidden = true;
  }

  show(stages) {
    const names = Object.keys(stages);
    this.block.hidden = names.length === 0;
    // The cells are built again only when the stages change (a driver restarted), in loop order.
    const order = names.join(",");
    if (order !== this.order) {
      this.order = order;
      this.grid.replaceChildren();
      this.values.clear();
      for (const name of names) {
        child(this.grid, "span", "stage-name", name.replaceAll("_", " "));
        this.values.set(name, child(this.grid, "span", "stage-value"));
      }
    }
    for (const [name, cell] of this.values) {
      const { p50_ms: p50, p95_ms: p95 } = stages[name];
      const value = `${milliseconds(p50)} / ${milliseconds(p95)}`;
      if (cell.textContent !== value) cell.textContent = value;
    }
  }
}

// At most four characters (0.04, 3.41, 28.4, 123): a 0.01 ms stage and a 33 ms wait read alike.
function milliseconds(value) {
  if (typeof value !== "number" || !Number.isFinite(value)) return "-";
  if (value >= 100) return value.toFixed(0);
  return value.toFixed(value >= 10 ? 1 : 2);
}

// The Trainer Console: the trainer in words, the weights the car drives with, the processes,
// links and nodes on other PCs (with their host names) on one line each, time on stream, and the newest events; it never overflows its tile:
// the events take the room left and the oldest of them go first.
class TrainerTile {
  constructor(spec, element) {
    element.classList.add("panel");
    const title = child(element, "div", "panel-title", spec.title);
    this.onStream = child(title, "span", "on-stream", "");
    this.rows = new Rows(element);
    this.weights = child(element, "div", "weights", "");
    this.events = child(element, "div", "events");
    this.startedMs = null;
    setInterval(() => this.tick(), 1000);
  }

  onState(state) {
    const trainer = state.trainer;
    this.rows.set("status", "status", trainer ? trainerStatus(trainer) : "starting");
    if (trainer) {
      this.rows.set("batch", "batches trained", whole(trainer.batch));
      this.rows.set("speed", "samples/s", whole(trainer.samples_per_s));
      for (const [name, value] of Object.entries(trainer.loss)) {
        this.rows.set(`loss:${name}`, `loss ${words(name)}`, fixed(value, 4));
      }
      for (const [name, fill] of Object.entries(trainer.buffers)) {
        const capacity = Math.max(1, fill.capacity);
        this.rows.set(`buffer:${name}`, `buffer ${words(name)}`, `${whole(fill.fill)} / ${whole(fill.capacity)}`, {
          from: 0,
          to: fill.fill / capacity,
          mark: fill.needed ? fill.needed / capacity : undefined,
        });
      }
    }
    const processes = Object.entries(state.processes).map(([name, process]) => {
      const restarts = process.restarts ? ` (${process.restarts} restarts)` : "";
      return `${name} ${words(process.state)}${restarts}`;
    });
    if (processes.length) this.rows.set("processes", "processes", processes.join(" \u00b7 "));
    const links = Object.entries(state.connections).map(([name, text]) => `${name} ${text}`);
    if (links.length) this.rows.set("links", "links", links.join(" \u00b7 "));
    const elsewhere = state.elsewhere || [];
    if (elsewhere.length) this.rows.set("elsewhere", "other PCs", elsewhere.join(" \u00b7 "));
    this.rows.sweep();
    const weights = state.driver ? weightsLine(state.driver, trainer) : "";
    if (this.weights.textContent !== weights) this.weights.textContent = weights;
    const shown = state.events;
    if (this.events.dataset.shown !== shown.join("\n")) {
      this.events.dataset.shown = shown.join("\n");
      this.events.replaceChildren(...shown.map((text) => {
        const line = document.createElement("div");
        line.className = "event";
        line.textContent = text;
        return line;
      }));
    }
    if (typeof state.started_ms === "number") this.startedMs = state.started_ms;
    this.tick();
  }

  tick() {
    if (this.startedMs === null) return;
    const text = `on stream ${duration((Date.now() - this.startedMs) / 1000)}`;
    if (this.onStream.textContent !== text) this.onStream.textContent = text;
  }
}

class LossTile {
  constructor(spec, element, options) {
    element.classList.add("panel");
    const header = child(element, "div", "panel-title", spec.title);
    this.legend = child(header, "span", "legend");
    this.smoothingLabel = child(header, "span", "smoothing");
    this.canvas = child(element, "canvas", "loss-canvas");
    this.chart = new LossChart(this.canvas, this.legend, options);
    this.showSmoothing(options.smoothing);
    if (options.slider) {
      const slider = child(header, "input", "smoothing-slider");
      Object.assign(slider, { type: "range", min: "0", max: "0.99", step: "0.01", value: String(options.smoothing) });
      slider.addEventListener("input", () => {
        this.chart.setSmoothing(Number(slider.value));
        this.showSmoothing(Number(slider.value));
      });
    }
    this.generation = null;
    this.lastSeq = 0;
    this.points = [];
    this.loading = false;
    requestAnimationFrame(() => {
      this.canvas.width = this.canvas.clientWidth;
      this.canvas.height = this.canvas.clientHeight;
      this.chart.redraw();
    });
  }

  showSmoothing(value) {
    this.smoothingLabel.textContent = `smoothing ${value.toFixed(2)}`;
  }

  onState(state) {
    const { generation, tail } = state.loss;
    const missed = tail.length > 0 && tail[0][0] > this.lastSeq + 1 && this.points.length > 0;
    if (generation !== this.generation || missed) {
      this.reload();
      return;
    }
    const fresh = tail.filter((point) => point[0] > this.lastSeq);
    if (fresh.length === 0) return;
    this.points.push(...fresh);
    this.lastSeq = fresh[fresh.length - 1][0];
    this.chart.setPoints(this.points);
  }

  // The whole history: on the first state, after a switch, or after missing points.
  async reload() {
    if (this.loading) return;
    this.loading = true;
    try {
      const response = await fetch("/overlay/loss.json", { cache: "no-store" });
      const history = await response.json();
      this.generation = history.generation;
      this.points = history.points;
      this.lastSeq = this.points.length ? this.points[this.points.length - 1][0] : 0;
      this.chart.setPoints(this.points);
    } catch (error) {
      this.generation = null; // offline: the next state message tries again
    } finally {
      this.loading = false;
    }
  }
}

// Alert cards over the main camera. The same alert (kind and text) again within the coalescing
// window joins its card as a count ("x3") instead of stacking copies; cards are ordered by
// priority, then newest first, and together never cover more than alertShare of the main
// camera: lower-priority and older cards give way first, so an unstuck never hides a chat tag.
class AlertsTile {
  constructor(spec, element, options) {
    this.element = element;
    this.list = child(element, "div", "alerts");
    this.showMs = options.alertSeconds * 1000;
    this.coalesceMs = options.alertCoalesceSeconds * 1000;
    this.budget = options.alertShare * options.mainArea; // layout pixels squared
    this.lastSeq = null;
    // Every card's group ({card, count, lastMs, priority, order, timers}); `latest` holds the
    // newest group of each kind + text, the one a repeat within the window joins.
    this.groups = new Set();
    this.latest = new Map();
    this.shownCount = 0; // orders cards of equal priority: alerts handled in one go tie in time
  }

  onState(state) {
    const nowMs = Date.now();
    for (const [seq, kind, text, atMs] of state.alerts) {
      if (this.lastSeq !== null && seq <= this.lastSeq) continue;
      // On a (re)connect, only alerts still young enough to be on screen are shown.
      if (this.lastSeq !== null || nowMs - atMs < this.showMs) this.show(kind, text, atMs);
    }
    if (state.alerts.length) this.lastSeq = state.alerts[state.alerts.length - 1][0];
    else if (this.lastSeq === null) this.lastSeq = 0;
  }

  show(kind, text, atMs) {
    const key = `${kind}\n${text}`;
    let group = this.latest.get(key);
    // Past the window the alert starts a card of its own; the older card stays its time.
    if (!group || atMs - group.lastMs > this.coalesceMs) {
      group = { key, kind, count: 0, priority: alertPriority(kind), card: null, timers: [] };
      this.groups.add(group);
      this.latest.set(key, group);
    }
    group.count += 1;
    group.lastMs = atMs;
    this.shownCount += 1;
    group.order = this.shownCount; // among equal priorities the newest first
    if (!group.card) group.card = this.card(kind, text);
    group.card.classList.remove("leaving");
    const count = group.card.querySelector(".alert-count");
    count.textContent = group.count > 1 ? `\u00d7${group.count}` : "";
    for (const timer of group.timers) clearTimeout(timer);
    group.timers = [
      setTimeout(() => group.card && group.card.classList.add("leaving"), this.showMs),
      setTimeout(() => this.removeCard(group), this.showMs + 600),
    ];
    this.arrange();
  }

  card(kind, text) {
    const card = document.createElement("div");
    card.className = `alert alert-${String(kind).replace(/[^a-z_]/g, "")}`;
    const title = child(card, "div", "alert-title");
    child(title, "span", "alert-kind", Object.hasOwn(ALERT_TITLES, kind) ? ALERT_TITLES[kind] : String(kind));
    child(title, "span", "alert-count", "");
    child(card, "div", "alert-text", text);
    return card;
  }

  // Cards in order (priority, then newest), then the least important leave until the rest fit.
  arrange() {
    const nowMs = Date.now();
    for (const group of [...this.groups]) {
      const latest = this.latest.get(group.key) === group;
      if (group.card || (latest && nowMs - group.lastMs <= this.coalesceMs)) continue;
      this.groups.delete(group);
      if (latest) this.latest.delete(group.key);
    }
    const shown = [...this.groups].filter((group) => group.card);
    shown.sort((a, b) => b.priority - a.priority || b.order - a.order);
    // Only cards out of place move (a moved card plays its entrance again).
    shown.forEach((group, index) => {
      const there = this.list.children[index];
      if (there !== group.card) this.list.insertBefore(group.card, there || null);
    });
    for (const group of shown) group.card.style.maxHeight = "";
    const scale = Number(this.element.style.getPropertyValue("--scale")) || 1;
    const budget = this.budget * scale * scale;
    while (shown.length > 1 && this.covered(shown) > budget) this.removeCard(shown.pop());
    if (shown.length === 1) {
      // One card alone over the share (a very long text) is cut to it.
      const card = shown[0].card;
      card.style.maxHeight = `${Math.floor(budget / Math.max(1, card.offsetWidth))}px`;
    }
  }

  // The area the cards cover, in the page's pixels: layout boxes (offset*), not the animation's
  // transforms, cut at the tile's edge (what lies beyond is not drawn).
  covered(groups) {
    const bottom = this.element.clientHeight;
    let area = 0;
    for (const { card } of groups) {
      const height = Math.max(0, Math.min(card.offsetTop + card.offsetHeight, bottom) - card.offsetTop);
      // A card cut by the tile's edge counts whole: it has to go rather than show half.
      area += card.offsetTop + card.offsetHeight > bottom ? Infinity : card.offsetWidth * height;
    }
    return area;
  }

  removeCard(group) {
    if (!group.card) return;
    for (const timer of group.timers) clearTimeout(timer);
    group.timers = [];
    group.card.remove();
    group.card = null;
  }
}

// What outranks what on screen: what chat and the streamer did, then failures, then the
// car's own routine (an unstuck every few seconds while the model is young).
const ALERT_PRIORITY = { moment: 3, switch: 3, vote: 3, crash_loop: 2, error: 2, unstuck: 1 };

function alertPriority(kind) {
  return Object.hasOwn(ALERT_PRIORITY, kind) ? ALERT_PRIORITY[kind] : 2;
}
