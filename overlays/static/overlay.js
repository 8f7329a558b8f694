// The overlay page: the full 1920x1080 layout (/overlay/) or one tile (/overlay/<tile>).
// Query parameters: width, height (pixels; default the tile's layout size, or the window for
// the full layout), theme (dark | light | clear), smoothing (loss chart, 0-0.999),
// slider=1 (a smoothing slider on the loss tile), alert_s (seconds an alert stays).

import { Connection } from "./connection.js";
import { buildTile } from "./tiles.js";

const LAYOUT_WIDTH = 1920;
const LAYOUT_HEIGHT = 1080;
const THEMES = ["dark", "light", "clear"];
const LATENCY_KEPT = 2000;
const CAMERA_NAMES = ["hood", "convcam", "chase"]; // by index, as CAMERAS in server.py

// What the page did, for tests and bench/overlay.py (read through the browser's devtools).
const stats = {
  online: false,
  connects: 0,
  states: 0,
  frames: [0, 0, 0],
  dropped: 0, // frames replaced by a newer one while the page was still decoding
  broken: 0, // frames that did not decode
  paints: [], // [camera, seq, sentMs, paintedMs], the newest LATENCY_KEPT
};
window.overlayStats = stats;

function main() {
  const layout = JSON.parse(document.getElementById("overlay-layout").textContent);
  const config = JSON.parse(document.getElementById("overlay-config").textContent);
  const options = readOptions(new URLSearchParams(location.search), config, layout);
  const tileName = document.body.dataset.tile;
  document.body.classList.add(`theme-${options.theme}`);
  const root = document.getElementById("overlay");
  const tiles = tileName ? [singleTile(layout, tileName, root, options)] : fullLayout(layout, root, options);
  const cameras = [[], [], []];
  for (const tile of tiles) if (tile.camera !== undefined) cameras[tile.camera].push(tile);
  const decoder = new NewestFrameDecoder((frame, bitmap) => {
    for (const tile of cameras[frame.camera]) tile.onFrame(bitmap);
    stats.frames[frame.camera] += 1;
    stats.paints.push([frame.camera, frame.seq, frame.sentMs, performance.timeOrigin + performance.now()]);
    if (stats.paints.length > LATENCY_KEPT) stats.paints.splice(0, stats.paints.length - LATENCY_KEPT);
  });

  const connection = new Connection({
    cameras: CAMERA_NAMES.filter((_, index) => cameras[index].length > 0),
    onOnline(online) {
      stats.online = online;
      if (online) stats.connects += 1;
      document.body.classList.toggle("offline", !online);
    },
    onMessage(message) {
      if (message.type !== "state") return;
      stats.states += 1;
      for (const tile of tiles) if (tile.onState) tile.onState(message);
    },
    onFrame(frame) {
      if (cameras[frame.camera] && cameras[frame.camera].length > 0) decoder.offer(frame);
    },
  });
  connection.start();
}

// One decode at a time per camera; a frame arriving meanwhile waits, and a newer one replaces it.
// A page short of CPU then shows fewer frames instead of ever older ones (the hub does the same
// for a slow connection).
class NewestFrameDecoder {
  constructor(onDecoded) {
    this.onDecoded = onDecoded;
    this.busy = [false, false, false];
    this.waiting = [null, null, null];
  }

  offer(frame) {
    if (this.busy[frame.camera]) {
      if (this.waiting[frame.camera]) stats.dropped += 1;
      this.waiting[frame.camera] = frame;
      return;
    }
    this.decode(frame);
  }

  async decode(frame) {
    this.busy[frame.camera] = true;
    try {
      const bitmap = await createImageBitmap(frame.jpeg);
      this.onDecoded(frame, bitmap);
      bitmap.close();
    } catch (error) {
      stats.broken += 1; // not a JPEG the browser can read: skip it, keep the last picture
    } finally {
      this.busy[frame.camera] = false;
    }
    const next = this.waiting[frame.camera];
    this.waiting[frame.camera] = null;
    if (next) this.decode(next);
  }
}

// Query parameters over the app's [overlay] settings (config), sizes from the layout.
function readOptions(params, config, layout) {
  const main = layout.find((tile) => tile.name === "camera");
  return {
    width: clampedNumber(params.get("width"), 16, 7680, null),
    height: clampedNumber(params.get("height"), 16, 4320, null),
    theme: THEMES.includes(params.get("theme")) ? params.get("theme") : "dark",
    smoothing: clampedNumber(params.get("smoothing"), 0, 0.999, 0.6),
    slider: params.get("slider") === "1",
    alertSeconds: clampedNumber(params.get("alert_s"), 1, 120, config.alert_s),
    alertCoalesceSeconds: config.alert_coalesce_s,
    alertShare: config.alert_share,
    mainArea: main.width * main.height, // layout pixels; alerts cover alertShare of it at most
  };
}

function clampedNumber(text, low, high, fallback) {
  if (text === null || text.trim() === "") return fallback;
  const value = Number(text);
  return Number.isFinite(value) ? Math.min(high, Math.max(low, value)) : fallback;
}

// One tile filling the page (an OBS browser source of the tile's size).
function singleTile(layout, name, root, options) {
  const spec = layout.find((tile) => tile.name === name);
  const width = options.width || window.innerWidth || spec.width;
  const height = options.height || window.innerHeight || spec.height;
  const element = placed(root, 0, 0, width, height, spec.height);
  setSize(root, width, height);
  return buildTile(spec, element, options);
}

// Every tile at its layout position, the 1920x1080 canvas scaled to the page.
function fullLayout(layout, root, options) {
  const width = options.width || window.innerWidth || LAYOUT_WIDTH;
  const height = options.height || window.innerHeight || LAYOUT_HEIGHT;
  const scale = Math.min(width / LAYOUT_WIDTH, height / LAYOUT_HEIGHT);
  setSize(root, LAYOUT_WIDTH, LAYOUT_HEIGHT);
  root.style.transformOrigin = "0 0";
  root.style.transform = `scale(${scale})`;
  return layout.map((spec) => {
    const element = placed(root, spec.x, spec.y, spec.width, spec.height, spec.height);
    return buildTile(spec, element, options);
  });
}

function placed(root, x, y, width, height, layoutHeight) {
  const element = document.createElement("div");
  Object.assign(element.style, { left: `${x}px`, top: `${y}px` });
  setSize(element, width, height);
  // Text scales with the tile: a tile shown twice as tall has letters twice as tall.
  element.style.setProperty("--scale", String(height / layoutHeight));
  root.appendChild(element);
  return element;
}

function setSize(element, width, height) {
  element.style.width = `${width}px`;
  element.style.height = `${height}px`;
}

// Last: the classes above are only defined once their declarations have run.
main();
