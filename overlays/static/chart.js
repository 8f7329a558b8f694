// The loss chart: total and per-output loss against batches, raw values faint and a smoothed
// line on top, smoothed the way TensorBoard's slider does it (a debiased exponential moving
// average), so the curve reads the same as TensorBoard's on the same event files.

const COLOURS = ["#ff7043", "#42a5f5", "#66bb6a", "#ab47bc", "#ffca28", "#26c6da", "#ec407a"];

// TensorBoard's smoothing (tensorboard/components/vz_line_chart2): the EMA divided by
// (1 - weight^n) so the first points are not pulled towards zero. null stays a gap.
export function smooth(values, weight) {
  let last = 0;
  let count = 0;
  const allEqual = values.every((value) => value === values[0]);
  return values.map((value) => {
    if (value === null || !Number.isFinite(value)) return null;
    if (allEqual) return value;
    last = last * weight + (1 - weight) * value;
    count += 1;
    const debias = weight === 1 ? 1 : 1 - Math.pow(weight, count);
    return last / debias;
  });
}

export class LossChart {
  constructor(canvas, legend, { smoothing, theme }) {
    this.canvas = canvas;
    this.legend = legend;
    this.smoothing = smoothing;
    this.ink = theme === "light" ? "#1d232b" : "#e8eef5";
    this.grid = theme === "light" ? "rgba(0,0,0,0.15)" : "rgba(255,255,255,0.15)";
    this.points = [];
    this.pending = false;
  }

  setPoints(points) {
    this.points = points;
    this.redraw();
  }

  setSmoothing(value) {
    this.smoothing = value;
    this.redraw();
  }

  redraw() {
    // Several updates within one frame cost one drawing.
    if (this.pending) return;
    this.pending = true;
    requestAnimationFrame(() => {
      this.pending = false;
      this.draw();
    });
  }

  draw() {
    const { canvas } = this;
    const context = canvas.getContext("2d");
    const width = canvas.width;
    const height = canvas.height;
    context.clearRect(0, 0, width, height);
    const names = seriesNames(this.points);
    this.updateLegend(names);
    const fontPx = Math.max(10, Math.round(height / 18));
    context.font = `${fontPx}px sans-serif`;
    context.fillStyle = this.ink;
    if (this.points.length === 0) {
      context.textAlign = "center";
      context.fillText("waiting for the first losses", width / 2, height / 2);
      return;
    }
    const batches = this.points.map((point) => point[1]);
    const series = names.map((name) => {
      const raw = this.points.map((point) => finiteOrNull(point[2][name]));
      return { name, raw, smoothed: smooth(raw, this.smoothing) };
    });
    const values = series.flatMap((line) => line.raw).filter((value) => value !== null);
    if (values.length === 0) return;
    const box = {
      left: fontPx * 4,
      right: width - fontPx,
      top: fontPx,
      bottom: height - fontPx * 2,
    };
    const xRange = paddedRange(...extent(batches), 0);
    const yRange = paddedRange(...extent(values), 0.05);
    if (yRange[0] < 0 && extent(values)[0] >= 0) yRange[0] = 0; // losses are not negative
    const x = (batch) => box.left + ((batch - xRange[0]) / (xRange[1] - xRange[0])) * (box.right - box.left);
    const y = (value) => box.bottom - ((value - yRange[0]) / (yRange[1] - yRange[0])) * (box.bottom - box.top);
    this.drawAxes(context, box, xRange, yRange, x, y, fontPx);
    series.forEach((line, index) => {
      const colour = COLOURS[index % COLOURS.length];
      drawLine(context, batches, line.raw, x, y, colour, 0.25, 1);
      drawLine(context, batches, line.smoothed, x, y, colour, 1, Math.max(2, fontPx / 7));
    });
  }

  drawAxes(context, box, xRange, yRange, x, y, fontPx) {
    context.strokeStyle = this.grid;
    context.lineWidth = 1;
    context.fillStyle = this.ink;
    context.textAlign = "right";
    context.textBaseline = "middle";
    for (const value of ticks(yRange, 4)) {
      context.beginPath();
      context.moveTo(box.left, y(value));
      context.lineTo(box.right, y(value));
      context.stroke();
      context.fillText(formatNumber(value), box.left - fontPx / 3, y(value));
    }
    context.textBaseline = "top";
    ticks(xRange, 4).forEach((batch, index, all) => {
      // The end labels align inwards so they stay inside the canvas.
      context.textAlign = index === 0 ? "left" : index === all.length - 1 ? "right" : "center";
      context.fillText(Math.round(batch).toLocaleString("en-US"), x(batch), box.bottom + fontPx / 3);
    });
  }

  updateLegend(names) {
    const shown = names.join("\n");
    if (this.legend.dataset.names === shown) return;
    this.legend.dataset.names = shown;
    this.legend.replaceChildren(
      ...names.map((name, index) => {
        const item = document.createElement("span");
        item.className = "legend-item";
        item.style.color = COLOURS[index % COLOURS.length];
        item.textContent = name;
        return item;
      }),
    );
  }
}

function seriesNames(points) {
  const names = new Set();
  for (const point of points) for (const name of Object.keys(point[2])) names.add(name);
  // "total" first, the outputs after it in a stable order.
  return [...names].sort((a, b) => (a === "total" ? -1 : b === "total" ? 1 : a.localeCompare(b)));
}

function finiteOrNull(value) {
  return typeof value === "number" && Number.isFinite(value) ? value : null;
}

// Math.min(...values) overflows the call stack on long histories.
function extent(values) {
  let low = Infinity;
  let high = -Infinity;
  for (const value of values) {
    if (value < low) low = value;
    if (value > high) high = value;
  }
  return [low, high];
}

function paddedRange(low, high, padding) {
  if (low === high) return [low - 1, high + 1];
  const extra = (high - low) * padding;
  return [low - extra, high + extra];
}

function ticks([low, high], count) {
  const step = (high - low) / count;
  return Array.from({ length: count + 1 }, (_, index) => low + step * index);
}

function formatNumber(value) {
  const size = Math.abs(value);
  if (size !== 0 && (size < 0.01 || size >= 10000)) return value.toExponential(1);
  return value.toFixed(size < 1 ? 3 : 2);
}

function drawLine(context, batches, values, x, y, colour, alpha, width) {
  context.globalAlpha = alpha;
  context.strokeStyle = colour;
  context.lineWidth = width;
  context.beginPath();
  let drawing = false;
  values.forEach((value, index) => {
    if (value === null) {
      drawing = false;
      return;
    }
    if (drawing) context.lineTo(x(batches[index]), y(value));
    else context.moveTo(x(batches[index]), y(value));
    drawing = true;
  });
  context.stroke();
  context.globalAlpha = 1;
}
