// The protoshot console: look at a served model, try it, add shots, remove classes.
// Plain DOM and fetch, no build step; user text only ever enters the page as textContent.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { modality: "text", readOnly: false, classes: [], image: null };
// Answers can arrive out of order: each kind of request is numbered and only the latest shown.
const latest = { refresh: 0, predict: 0 };

// ---------------------------------------------------------------------------- the API
function headers(json) {
  const h = {};
  const key = $("api-key").value.trim();
  if (key) h["X-API-Key"] = key;
  if (json) h["Content-Type"] = "application/json";
  return h;
}

async function call(method, path, body) {
  const json = body !== undefined && !(body instanceof FormData);
  const response = await fetch(path, {
    method,
    headers: headers(json),
    body: json ? JSON.stringify(body) : body,
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) {
    let detail = typeof data.detail === "string" ? data.detail : response.statusText;
    if (response.status === 401) detail += " (enter the API key at the top)";
    throw new Error(`${response.status}: ${detail}`);
  }
  return data;
}

const classPath = (name) => `/v1/classes/${encodeURIComponent(String(name))}`;

// ---------------------------------------------------------------------------- feedback
function say(message, isError = false) {
  const status = $("status");
  status.textContent = message;
  status.classList.toggle("error", isError);
}

async function busy(button, work) {
  button.disabled = true;
  try {
    await work();
  } catch (err) {
    say(err.message, true);
  } finally {
    button.disabled = false;
  }
}

function element(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

// ---------------------------------------------------------------------------- the model
async function refresh() {
  const ticket = ++latest.refresh;
  const [health, listed] = await Promise.all([call("GET", "/healthz"), call("GET", "/v1/classes")]);
  if (ticket !== latest.refresh) return;
  const model = listed.model;
  state.modality = model.modality;
  state.readOnly = health.read_only;
  state.classes = listed.classes;
  state.threshold = model.threshold;
  const threshold =
    model.threshold === null ? "never rejects" : `rejects below similarity ${model.threshold.toFixed(3)}`;
  $("model-info").textContent =
    `${model.embedder} (${model.modality}) · ${model.method} · ${model.classes} classes · ${threshold}` +
    (state.readOnly ? " · read-only" : "");
  const images = state.modality === "image";
  $("predict-text").hidden = images;
  $("drop").hidden = !images;
  $("add-text").hidden = images;
  $("add-files").hidden = !images;
  $("add-section").hidden = state.readOnly;
  renderClasses();
}

function renderClasses() {
  const filter = $("filter").value.trim().toLowerCase();
  const rows = state.classes.filter((c) => String(c.name).toLowerCase().includes(filter));
  const body = $("classes").tBodies[0];
  body.replaceChildren(...rows.map(classRow));
  const shots = state.classes.reduce((sum, c) => sum + c.shots, 0);
  $("class-count").textContent = `(${state.classes.length}, ${shots} shots)`;
  $("class-names").replaceChildren(...state.classes.map((c) => {
    const option = document.createElement("option");
    option.value = String(c.name);
    return option;
  }));
}

function classRow(cls) {
  const row = document.createElement("tr");
  row.dataset.name = String(cls.name);
  row.append(element("td", cls.name, "name"), element("td", cls.shots, "num shots"));
  const updated = element("td", cls.updated ? new Date(cls.updated).toLocaleString() : "—", "updated");
  if (cls.updated) updated.title = cls.updated;
  row.append(updated);
  const cell = element("td");
  if (!state.readOnly) {
    const remove = element("button", "Remove", "remove");
    remove.type = "button";
    remove.addEventListener("click", (event) => removeClass(remove, cls.name, event));
    cell.append(remove);
  }
  row.append(cell);
  return row;
}

// Removing takes two clicks: the first arms the button for a few seconds; a double click
// (or a second click within ARM_MS) does not confirm, so one gesture never removes a class.
const ARM_MS = 400;

function removeClass(button, name, event) {
  const armedAt = Number(button.dataset.armedAt || 0);
  if (!armedAt) {
    arm(button);
    return;
  }
  if (event.detail > 1 || Date.now() - armedAt < ARM_MS) return; // the arming gesture itself
  busy(button, async () => {
    const answer = await call("DELETE", classPath(name));
    say(`removed '${answer.name}': ${answer.classes} classes remain`);
    await refresh();
  });
}

function arm(button) {
  button.dataset.armedAt = String(Date.now());
  button.classList.add("armed");
  button.textContent = "Confirm";
  setTimeout(() => {
    delete button.dataset.armedAt;
    button.classList.remove("armed");
    button.textContent = "Remove";
  }, 4000);
}

// ---------------------------------------------------------------------------- predict
function showPrediction(prediction) {
  const out = $("prediction");
  const answer = prediction.rejected
    ? element("p", "unknown: no class is similar enough", "answer unknown")
    : element("p", prediction.label, "answer");
  const bars = prediction.top_k.map((top) => {
    const bar = element("div", undefined, "bar");
    const fill = element("div", undefined, "fill");
    fill.style.width = `${(100 * top.probability).toFixed(1)}%`;
    const track = element("div");
    track.append(fill);
    const label = element("span", top.label, "label");
    label.title = String(top.label);
    bar.append(label, track, element("span", `${(100 * top.probability).toFixed(1)}%`, "p"));
    return bar;
  });
  const note =
    state.threshold === null
      ? "This model never rejects: every input gets a class."
      : `Inputs whose best class similarity is below ${state.threshold.toFixed(3)} are answered "unknown".`;
  out.replaceChildren(answer, ...bars, element("p", note, "note"));
}

async function predict(event) {
  event.preventDefault();
  const topK = Number($("top-k").value) || 1;
  const ticket = ++latest.predict;
  await busy($("predict"), async () => {
    let answer;
    if (state.modality === "image") {
      if (!state.image) throw new Error("drop or choose an image first");
      const form = new FormData();
      form.append("file", state.image);
      form.append("top_k", String(topK));
      answer = await call("POST", "/v1/predict", form);
    } else {
      const text = $("predict-text").value.trim();
      if (!text) throw new Error("type a text first");
      answer = await call("POST", "/v1/predict", { texts: [text], top_k: topK });
    }
    if (ticket !== latest.predict) return; // a newer question was asked meanwhile
    showPrediction(answer.predictions[0]);
    say("");
  });
}

function chooseImage(file) {
  if (!file) return;
  state.image = file;
  const preview = $("preview");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("predict-form").requestSubmit();
}

// ---------------------------------------------------------------------------- add shots
function base64(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(String(reader.result).split(",", 2)[1]);
    reader.onerror = () => reject(new Error(`cannot read ${file.name}`));
    reader.readAsDataURL(file);
  });
}

async function addShots(event) {
  event.preventDefault();
  const name = $("add-class").value.trim();
  await busy($("add"), async () => {
    let body;
    if (state.modality === "image") {
      const files = [...$("add-files").files];
      if (!files.length) throw new Error("choose image files to add");
      body = { images: await Promise.all(files.map(base64)) };
    } else {
      const texts = $("add-text").value.split("\n").map((t) => t.trim()).filter(Boolean);
      if (!texts.length) throw new Error("type one example per line");
      body = { texts };
    }
    const answer = await call("POST", `${classPath(name)}/examples`, body);
    $("add-text").value = "";
    $("add-files").value = "";
    say(`'${answer.name}' now has ${answer.shots} shots (${answer.classes} classes); saved`);
    await refresh();
  });
}

// ---------------------------------------------------------------------------- start
function start() {
  const key = $("api-key");
  key.value = sessionStorage.getItem("protoshot-api-key") || "";
  key.addEventListener("change", () => {
    sessionStorage.setItem("protoshot-api-key", key.value.trim());
    refresh().catch((err) => say(err.message, true));
  });
  $("predict-form").addEventListener("submit", predict);
  $("add-form").addEventListener("submit", addShots);
  $("filter").addEventListener("input", renderClasses);
  $("predict-file").addEventListener("change", (e) => chooseImage(e.target.files[0]));
  const drop = $("drop");
  drop.addEventListener("dragover", (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    chooseImage(e.dataTransfer.files[0]);
  });
  refresh().catch((err) => {
    $("model-info").textContent = "the model could not be read";
    say(err.message, true);
  });
}

document.addEventListener("DOMContentLoaded", start);
