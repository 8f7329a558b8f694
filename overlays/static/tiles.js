// One renderer per tile. Every text that came from the app (model names, chat notes in alerts,
// node names in events) is put on the page with textContent, never as HTML: a chat message
// that looks like markup shows as the characters it is.

import { LossChart } from "./chart.js";

// The camera index of each camera tile (FRAME_HEADER's first byte, CAMERAS in server.py).
const CAMERA_OF_TILE = { hood: 0, convcam: 1, camera: 2 };
const ALERTS_SHOWN = 4;
const ALERT_TITLES = {
  moment: "Moment",
  switch: "Model switch",
  vote: "Vote",
  unstuck: "Unstuck",
  crash_loop: "Crash loop",
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
    this.canvas = child(element, "canvas", "camera-canvas");
    this.canvas.width = element.clientWidth;
    this.canvas.height = element.clientHeight;
    if (spec.name !== "camera") child(element, "div", "caption", spec.title);
    this.status = child(element, "div", "camera-status", "waiting for the driver");
    this.framed = false;
  }

  onState(state) {
    const status = state.driver_connected ? "" : this.framed ? "no signal" : "waiting for the driver";
    if (this.status.textContent !== status) this.status.textContent = status;
  }

  onFrame(bitmap) {
    const context = this.canvas.getContext("2d");
    const { width, height } = this.canvas;
    // Contain: the whole image, centred, letterboxed with transparency.
    const scale = Math.min(width / bitmap.width, height / bitmap.height);
    const drawWidth = bitmap.width * scale;
    const drawHeight = bitmap.height * scale;
    context.clearRect(0, 0, width, height);
    context.drawImage(bitmap, (width - drawWidth) / 2, (height - drawHeight) / 2, drawWidth, drawHeight);
    this.framed = true;
  }
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
    this.rows.set("fps", "FPS", fixed(driver.fps, 1));
    this.rows.set("pps", "PPS", fixed(driver.pps, 1));
    this.rows.set("unstucks", "unstucks", whole(driver.unstucks));
    this.rows.set("distance", "distance", `${fixed(driver.distance_m / 1000, 2)} km`);
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

class TrainerTile {
  constructor(spec, element) {
    element.classList.add("panel");
    child(element, "div", "panel-title", spec.title);
    this.rows = new Rows(element);
    this.events = child(element, "div", "events");
  }

  onState(state) {
    const trainer = state.trainer;
    this.rows.set("status", "status", trainer ? trainer.status : "starting");
    if (trainer) {
      this.rows.set("batch", "batches trained", whole(trainer.batch));
      this.rows.set("speed", "samples/s", whole(trainer.samples_per_s));
      for (const [name, value] of Object.entries(trainer.loss)) {
        this.rows.set(`loss:${name}`, `loss ${name}`, fixed(value, 4));
      }
      for (const [name, fill] of Object.entries(trainer.buffers)) {
        const capacity = Math.max(1, fill.capacity);
        this.rows.set(`buffer:${name}`, `buffer ${name}`, `${whole(fill.fill)} / ${whole(fill.capacity)}`, {
          from: 0,
          to: fill.fill / capacity,
          mark: fill.needed ? fill.needed / capacity : undefined,
        });
      }
    }
    for (const [name, process] of Object.entries(state.processes)) {
      const restarts = process.restarts ? `, ${process.restarts} restarts` : "";
      this.rows.set(`process:${name}`, name, `${process.state}${restarts}`);
    }
    for (const [name, text] of Object.entries(state.connections)) {
      this.rows.set(`link:${name}`, name, text);
    }
    this.rows.sweep();
    const shown = state.events.slice(-5);
    if (this.events.dataset.shown !== shown.join("\n")) {
      this.events.dataset.shown = shown.join("\n");
      this.events.replaceChildren(...shown.map((text) => {
        const line = document.createElement("div");
        line.className = "event";
        line.textContent = text;
        return line;
      }));
    }
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

class AlertsTile {
  constructor(spec, element, options) {
    this.list = child(element, "div", "alerts");
    this.showMs = options.alertSeconds * 1000;
    this.lastSeq = null;
  }

  onState(state) {
    const nowMs = Date.now();
    for (const [seq, kind, text, atMs] of state.alerts) {
      if (this.lastSeq !== null && seq <= this.lastSeq) continue;
      // On a (re)connect, only alerts still young enough to be on screen are shown.
      if (this.lastSeq !== null || nowMs - atMs < this.showMs) this.show(kind, text);
    }
    if (state.alerts.length) this.lastSeq = state.alerts[state.alerts.length - 1][0];
    else if (this.lastSeq === null) this.lastSeq = 0;
  }

  show(kind, text) {
    const card = document.createElement("div");
    card.className = `alert alert-${String(kind).replace(/[^a-z_]/g, "")}`;
    child(card, "div", "alert-title", Object.hasOwn(ALERT_TITLES, kind) ? ALERT_TITLES[kind] : String(kind));
    child(card, "div", "alert-text", text);
    this.list.prepend(card);
    while (this.list.children.length > ALERTS_SHOWN) this.list.lastChild.remove();
    setTimeout(() => card.classList.add("leaving"), this.showMs);
    setTimeout(() => card.remove(), this.showMs + 600);
  }
}

