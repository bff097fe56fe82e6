// The ops dashboard: reads /api/state every few seconds and redraws. Every value is set as
// text (never as HTML): topic names, reasons and details come from outside this page.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
const COLOURS = ["#2f6fde", "#d9480f", "#2b8a3e", "#862e9c", "#e67700", "#0b7285", "#c2255c"];
const REFRESH_MS = 2000;

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text;
  if (className) td.className = className;
  return td;
}

function fillTable(id, rows, columns, empty) {
  const body = document.querySelector(`#${id} tbody`);
  body.replaceChildren();
  if (!rows || rows.length === 0) {
    const tr = document.createElement("tr");
    const td = cell(empty, "empty");
    td.colSpan = columns.length;
    tr.append(td);
    body.append(tr);
    return;
  }
  for (const row of rows) {
    const tr = document.createElement("tr");
    for (const column of columns) {
      const value = typeof column === "function" ? column(row) : row[column];
      tr.append(cell(value === null || value === undefined ? "—" : String(value)));
    }
    body.append(tr);
  }
}

async function sendBack(letter) {
  // The reason goes into the customer's audit trail with the redrive.
  const reason = window.prompt(
    `Send this ${letter.topic} message back to ${letter.service}? Why (recorded in the customer's audit trail):`,
  );
  const status = document.getElementById("letters-status");
  if (!reason) return;
  const response = await fetch("/api/dead-letters/redrive", {
    method: "POST",
    credentials: "same-origin",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ service: letter.service, id: letter.id, reason }),
  });
  const body = await response.json().catch(() => ({}));
  status.textContent =
    response.status === 202
      ? `Sent back: ${letter.topic} message of ${letter.service}`
      : `Not sent back (${response.status}): ${body.detail || "unknown error"}`;
  refresh();
}

function drawLetters(letters) {
  fillTable(
    "letters",
    letters,
    [
      (l) => String(l.dead_lettered_at || "").replace("T", " ").slice(0, 19),
      "service",
      "topic",
      "kind",
      "reason",
      (l) => (l.account_id || "—").slice(0, 8),
      () => "",
    ],
    letters === null ? "The services' dead letters cannot be read" : "No dead letters",
  );
  if (!letters) return;
  const rows = document.querySelectorAll("#letters tbody tr");
  letters.forEach((letter, index) => {
    const action = rows[index].lastElementChild;
    if (letter.redriven) {
      action.textContent = "sent back";
      return;
    }
    const button = document.createElement("button");
    button.type = "button";
    button.textContent = "Send back";
    button.addEventListener("click", () => sendBack(letter));
    action.replaceChildren(button);
  });
}

function drawServices(services) {
  const root = document.getElementById("services");
  root.replaceChildren();
  for (const service of services) {
    const card = document.createElement("article");
    card.className = `card status-${service.status}`;
    card.dataset.service = service.service;
    const title = document.createElement("h3");
    title.textContent = service.service;
    const status = document.createElement("p");
    status.className = "status";
    status.textContent = service.status;
    const rates = document.createElement("p");
    rates.textContent = `${service.requests_per_s} req/s · ${service.server_errors_per_s} 5xx/s`;
    const checks = document.createElement("ul");
    for (const [name, detail] of Object.entries(service.checks)) {
      const item = document.createElement("li");
      item.textContent = `${name}: ${detail}`;
      checks.append(item);
    }
    card.append(title, status, rates, checks);
    root.append(card);
  }
}

function lineChart(id, series, unit) {
  // series: [{name, points: [number]}]; one polyline each, scaled to the largest value.
  const root = document.getElementById(id);
  const width = 640;
  const height = 160;
  const pad = 28;
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  const longest = Math.max(2, ...series.map((s) => s.points.length));
  const top = Math.max(1, ...series.flatMap((s) => s.points));
  const axis = document.createElementNS(SVG, "path");
  axis.setAttribute("d", `M${pad},${pad / 2} V${height - pad} H${width - 4}`);
  axis.setAttribute("class", "axis");
  svg.append(axis);
  const label = document.createElementNS(SVG, "text");
  label.setAttribute("x", 2);
  label.setAttribute("y", pad / 2 + 4);
  label.textContent = `${top} ${unit}`;
  svg.append(label);
  series.forEach((s, index) => {
    const line = document.createElementNS(SVG, "polyline");
    const points = s.points.map((value, i) => {
      const x = pad + ((width - pad - 4) * i) / (longest - 1);
      const y = height - pad - ((height - pad * 1.5) * value) / top;
      return `${x.toFixed(1)},${y.toFixed(1)}`;
    });
    line.setAttribute("points", points.join(" "));
    line.setAttribute("stroke", COLOURS[index % COLOURS.length]);
    line.setAttribute("class", "series");
    line.dataset.series = s.name;
    svg.append(line);
  });
  const legend = document.createElement("ul");
  legend.className = "legend";
  series.forEach((s, index) => {
    const item = document.createElement("li");
    item.style.setProperty("--colour", COLOURS[index % COLOURS.length]);
    item.textContent = s.name;
    legend.append(item);
  });
  root.replaceChildren(svg, legend);
}

function drawCharts(history) {
  const topics = [...new Set(history.flatMap((point) => Object.keys(point.per_s)))].sort();
  lineChart(
    "throughput-chart",
    topics.map((topic) => ({ name: topic, points: history.map((p) => p.per_s[topic] || 0) })),
    "events/s",
  );
  lineChart("lag-chart", [{ name: "total lag", points: history.map((p) => p.lag) }], "records");
  lineChart(
    "backlog-chart",
    [{ name: "outbox backlog", points: history.map((p) => p.backlog) }],
    "events",
  );
}

function draw(state) {
  document.getElementById("updated").textContent = `Read at ${state.read_at}`;
  document.getElementById("operator").textContent = `Signed in: ${state.operator}`;
  drawServices(state.services);
  drawCharts(state.history);
  fillTable("topics", state.topics, ["topic", "published", "per_s"], "Nothing published yet");
  fillTable("lag-groups", state.lag_groups, ["group", "partitions", "lag"], "No consumer yet");
  fillTable("lag", state.lag, ["group", "topic", "partition", "lag"], "Every partition is read up");
  fillTable("outbox", state.outbox, ["service", "backlog", "oldest_age_s", "parked"], "No outbox");
  fillTable(
    "dead-letters",
    state.dead_letters,
    ["service", "topic", "kind", "count"],
    "No dead letters",
  );
  drawLetters(state.letters);
  fillTable(
    "traces",
    state.traces,
    [
      (t) => String(t.started_at).replace("T", " ").slice(11, 23),
      (t) => t.trace_id.slice(0, 8),
      "root",
      (t) => t.services.join(", "),
      "duration_ms",
      (t) =>
        [
          t.spans
            .map((s) => `${s.service}: ${s.name} (${s.duration_ms} ms)${s.error ? " ERROR" : ""}`)
            .join(" → ") + (t.more_spans ? ` … and ${t.more_spans} more` : ""),
          t.statements
            .map(
              (q) =>
                `${q.service}: ${q.count} PostgreSQL statement${q.count === 1 ? "" : "s"}` +
                ` (${q.duration_ms} ms)${q.error ? " ERROR" : ""}`,
            )
            .join(", "),
        ]
          .filter((part) => part)
          .join(" · "),
    ],
    state.traces === null ? "Spans go to the collector (see Jaeger)" : "No trace yet",
  );
  fillTable(
    "sagas",
    state.sagas,
    [
      (s) => s.saga_id.slice(0, 8),
      (s) => (s.steps || []).map((step) => `${step.step}: ${step.state}`).join(" · "),
      (s) => (s.waiting_for || []).join(", "),
      "step_deadline_at",
      (s) => (s.needs_attention ? "yes" : "no"),
    ],
    state.sagas === null ? "Retention cannot be read" : "No termination in flight",
  );
  const chain = document.getElementById("audit-chain");
  chain.textContent = `Chain: ${state.audit.chain}`;
  chain.className = `chain-${state.audit.chain}`;
  fillTable(
    "audit-alerts",
    state.audit.alerts,
    ["raised_at", "kind", "detail"],
    state.audit.alerts === null ? "Audit cannot be read" : "No alerts",
  );
  fillTable(
    "emails",
    Object.entries(state.emails).map(([outcome, count]) => ({ outcome, count })),
    ["outcome", "count"],
    "No email yet",
  );
}

async function refresh() {
  try {
    const response = await fetch("/api/state", { credentials: "same-origin" });
    if (response.status === 401) {
      window.location.assign("/sign-in");
      return;
    }
    draw(await response.json());
  } catch (error) {
    document.getElementById("updated").textContent = `Cannot read the dashboard: ${error}`;
  }
}

refresh();
setInterval(refresh, REFRESH_MS);
