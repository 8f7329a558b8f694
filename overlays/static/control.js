// The control dock: polls /control/state every second and renders it; every change is a POST
// with the session's CSRF token. Text from the app (chat lines, notes) is set as text only.
import { LossChart } from "./chart.js";

const POLL_MS = 1000;
const csrf = document.querySelector('meta[name="csrf-token"]').content;
const chart = new LossChart(byId("loss-canvas"), byId("loss-legend"), { smoothing: 0.6, theme: "dark" });
let lossKey = "";
let modelsKey = "";
let pollTimer = null;

function byId(id) {
  return document.getElementById(id);
}

function element(tag, text, className) {
  const made = document.createElement(tag);
  if (text !== undefined && text !== null) made.textContent = String(text);
  if (className) made.className = className;
  return made;
}

function number(value, digits = 4) {
  if (value === null || value === undefined) return "–";
  return typeof value === "number" ? (Number.isInteger(value) ? value.toLocaleString("en-US") : value.toPrecision(digits)) : String(value);
}

function say(text, refused = false) {
  const message = byId("message");
  message.textContent = text;
  message.classList.toggle("refused", refused);
}

async function post(path, body) {
  let response;
  try {
    response = await fetch(path, {
      method: "POST",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf },
      body: JSON.stringify(body),
      credentials: "same-origin",
    });
  } catch (error) {
    say(`no answer from the app: ${error}`, true);
    return null;
  }
  const reply = await response.json().catch(() => ({}));
  if (response.status === 401) {
    location.reload();
    return null;
  }
  if (!response.ok) {
    say(reply.error || `refused (${response.status})`, true);
    return null;
  }
  poll();
  return reply;
}

async function poll() {
  clearTimeout(pollTimer);
  const live = byId("live");
  try {
    const response = await fetch("/control/state", { cache: "no-store", credentials: "same-origin" });
    if (response.status === 401) {
      location.reload(); // the session ended: the sign-in form
      return;
    }
    render(await response.json());
    live.textContent = `live ${new Date().toLocaleTimeString()}`;
    live.classList.remove("stale");
  } catch (error) {
    live.textContent = "no answer from the app";
    live.classList.add("stale");
  }
  pollTimer = setTimeout(poll, POLL_MS);
}

function render(view) {
  const status = view.status;
  document.body.dataset.version = status.version;
  byId("on-stream").textContent = status.version ? `on stream: ${status.version}` : "no model on stream";
  const total = status.loss.total;
  byId("model-now").textContent =
    `batch ${number(status.batch)} · loss ${number(total)} · trainer ${status.trainer_status || "not reporting"}` +
    ` · driver ${status.driver_version ? `${status.driver_version} @ ${number(status.driver_batch)}` : "off"}` +
    ` · ${number(status.pps, 3)} PPS`;
  renderLoss(view.loss);
  renderModels(view.models, status);
  renderProcesses(status.processes, view.processes_controllable);
  renderRows(byId("links"), Object.entries(status.connections).map(([name, text]) => [name, text]));
  renderVote(view.vote);
  renderChat(view.chat);
}

function renderLoss(loss) {
  const last = loss.points.length ? loss.points[loss.points.length - 1][0] : 0;
  const key = `${loss.generation}:${loss.points.length}:${last}`;
  if (key === lossKey) return;
  lossKey = key;
  const canvas = byId("loss-canvas");
  if (canvas.width !== canvas.clientWidth && canvas.clientWidth > 0) canvas.width = canvas.clientWidth;
  chart.setPoints(loss.points);
}

function renderModels(models, status) {
  const body = byId("models").tBodies[0];
  const rows = [];
  const names = [];
  for (const { line, versions } of models) {
    names.push(line);
    rows.push(row([line, versions.length ? `${versions.length} version(s)` : "no version yet"], "line"));
    for (const version of versions) {
      names.push(version.name);
      const streamed = version.name === status.version;
      const loss = streamed && status.loss.total !== undefined ? ` · loss ${number(status.loss.total)}` : "";
      const batches = streamed && status.batch !== null ? status.batch : version.batches;
      const shown = row([`${streamed ? "▶ " : ""}${version.name}`, `${number(batches)} batches${loss}`], "version");
      shown.dataset.version = version.name;
      rows.push(shown);
    }
  }
  body.replaceChildren(...rows);
  const key = names.join("\n");
  if (key === modelsKey) return;
  modelsKey = key;
  const select = byId("switch-model");
  const chosen = select.value;
  select.replaceChildren(...names.map((name) => {
    const option = element("option", name);
    option.value = name;
    return option;
  }));
  if (names.includes(chosen)) select.value = chosen;
}

function renderProcesses(processes, controllable) {
  const body = byId("processes").tBodies[0];
  // Buttons are remade only when a state changes, not with each memory sample (every 5 s).
  const states = Object.entries(processes).map(([name, p]) => [name, p.state, p.restarts]);
  const key = JSON.stringify([states, controllable]);
  if (body.dataset.key !== key) {
    body.dataset.key = key;
    body.replaceChildren(...processRows(processes, controllable));
  }
  for (const shown of body.rows) {
    const rss = processes[shown.dataset.process]?.rss_mb;
    shown.cells[2].textContent = rss === null || rss === undefined ? "" : `${number(Math.round(rss))} MB`;
  }
}

function processRows(processes, controllable) {
  return Object.entries(processes).map(([name, process]) => {
    const restarts = process.restarts ? ` (${process.restarts} restarts)` : "";
    const shown = row([name, `${process.state.replace("_", " ")}${restarts}`, ""]);
    shown.cells[2].className = "memory";
    shown.dataset.process = name;
    shown.dataset.state = process.state;
    shown.cells[1].className = `state-${process.state}`;
    const actions = element("td", null, "actions");
    for (const doing of ["start", "stop", "restart"]) {
      const button = element("button", doing);
      button.type = "button";
      button.dataset.do = doing;
      button.disabled = !controllable;
      button.addEventListener("click", async () => {
        button.disabled = true;
        say(`${doing} ${name}…`);
        const reply = await post("/control/process", { name, do: doing });
        if (reply) say(`${name}: ${reply.state}`);
      });
      actions.append(button);
    }
    shown.append(actions);
    return shown;
  });
}

function renderVote(vote) {
  const shown = byId("vote");
  if (!vote.open) {
    shown.textContent = "no vote running";
    return;
  }
  const counts = vote.counts.map(([name, count]) => `${name}: ${count}`).join(" · ") || "no votes yet";
  shown.textContent = `${counts} · closes in ${Math.ceil(vote.closes_in_s)} s · needs ${vote.threshold}`;
}

function renderChat(lines) {
  const list = byId("chat");
  const key = lines.length ? `${lines.length}:${lines[lines.length - 1][0]}` : "";
  if (list.dataset.key === key) return;
  list.dataset.key = key;
  list.replaceChildren(...lines.slice().reverse().map(([atMs, user, text, reply]) => {
    const item = element("li");
    item.append(element("span", new Date(atMs).toLocaleTimeString() + " ", "when"));
    item.append(element("span", user, "who"), document.createTextNode(` ${text}`));
    if (reply) item.append(element("span", reply, "reply"));
    return item;
  }));
}

function renderRows(table, pairs) {
  table.tBodies[0].replaceChildren(...pairs.map((pair) => row(pair)));
}

function row(cells, className) {
  const made = element("tr", null, className);
  for (const cell of cells) made.append(element("td", cell));
  return made;
}

byId("switch-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const model = byId("switch-model").value;
  const reply = await post("/control/switch", { model, new: byId("switch-new").checked });
  if (reply) say(reply.switched ? `switched to ${reply.version} (${reply.how})` : `${reply.version} is already on stream`);
});

byId("tag-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const input = byId("tag-text");
  const reply = await post("/control/tag", { text: input.value });
  if (reply) {
    say(`tagged at batch ${number(reply.batch)}: ${reply.note}`);
    input.value = "";
  }
});

byId("logout").addEventListener("click", async () => {
  await post("/control/logout", {});
  location.reload();
});

poll();
