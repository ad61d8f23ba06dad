// mabeam observer: one EventSource, panels updated in place. No framework.
"use strict";
(() => {
  const $ = (sel) => document.querySelector(sel);
  const el = (tag, attrs, ...kids) => {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else node.setAttribute(k, v === true ? "" : v);
    }
    for (const kid of kids) if (kid !== null && kid !== undefined) node.append(kid);
    return node;
  };
  const fmtBytes = (n) => {
    const units = ["B", "KiB", "MiB", "GiB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
  };
  const fmtUptime = (s) => {
    s = Math.floor(s);
    const d = Math.floor(s / 86400), h = Math.floor(s / 3600) % 24, m = Math.floor(s / 60) % 60;
    return (d ? `${d}d ` : "") + `${h}h ${m}m ${s % 60}s`;
  };
  const fmtTime = (ms) => new Date(ms).toLocaleTimeString();

  // ---- token (kept for this tab only) and actions -------------------
  const TOKEN_KEY = "mabeam.token";
  const token = () => sessionStorage.getItem(TOKEN_KEY) || "";
  const say = (text, kind) => {
    const msg = $("#action-msg");
    msg.textContent = text;
    msg.dataset.kind = kind || "";
  };
  const armed = () => {
    const has = token() !== "";
    $("#mode").textContent = has ? "actions enabled" : "read-only";
    $("#mode").dataset.armed = String(has);
    document.querySelectorAll("button.act, button.restart-btn").forEach((b) => { b.disabled = !has; });
  };
  $("#token-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const value = $("#token").value.trim();
    if (value) {
      sessionStorage.setItem(TOKEN_KEY, value);
      // Reads under /api/ need the token unless the node allows public
      // reads; an EventSource sends no Authorization header, so reads
      // carry it in a same-site session cookie (mutations never do).
      document.cookie = `mabeam_token=${value}; path=/api/; SameSite=Strict`;
      // A stream refused for want of the token is retried now; a live one
      // is kept (a new EventSource would not resume from the last id).
      if (source && source.readyState !== EventSource.OPEN) { source.close(); connect(); }
    }
    $("#token").value = "";
    armed();
  });
  $("#token-clear").addEventListener("click", () => {
    sessionStorage.removeItem(TOKEN_KEY);
    document.cookie = "mabeam_token=; path=/api/; SameSite=Strict; max-age=0";
    armed();
  });

  async function act(method, path, body) {
    const headers = { Authorization: `Bearer ${token()}` };
    if (body !== undefined) headers["Content-Type"] = "application/json";
    try {
      const reply = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
      const json = await reply.json().catch(() => ({}));
      if (!reply.ok) {
        say(`${method} ${path}: ${reply.status} ${json.message || ""}`, "error");
        return null;
      }
      say(`${method} ${path}: done`, "ok");
      return json;
    } catch (err) {
      say(`${method} ${path}: ${err}`, "error");
      return null;
    }
  }

  // ---- theme ----------------------------------------------------------
  const THEMES = ["auto", "light", "dark"];
  const applyTheme = (t) => {
    if (t === "auto") delete document.documentElement.dataset.theme;
    else document.documentElement.dataset.theme = t;
    $("#theme").textContent = `theme: ${t}`;
  };
  let theme = localStorage.getItem("mabeam.theme") || "auto";
  applyTheme(theme);
  $("#theme").addEventListener("click", () => {
    theme = THEMES[(THEMES.indexOf(theme) + 1) % THEMES.length];
    localStorage.setItem("mabeam.theme", theme);
    applyTheme(theme);
  });

  // ---- System ---------------------------------------------------------
  function renderSystem(s) {
    // Frames seen, for whoever waits for the next one (tests, scripts).
    document.body.dataset.frames = String(Number(document.body.dataset.frames || 0) + 1);
    $("#node-name").textContent = s.node;
    const by = s.agents && s.agents.by_status ? Object.entries(s.agents.by_status)
      .filter(([, n]) => n > 0).map(([k, n]) => `${k} ${n}`).join(", ") : "";
    const rt = (r) => r ? `${r.workers} workers, ${r.tasks} tasks, queue ${r.queue}` : "—";
    const facts = [
      ["Node", s.node], ["Version", s.version], ["Uptime", fmtUptime(s.uptime_s)],
      ["Data directory", s.data_dir], ["Store", s.store],
      ["Agents", s.agents ? `${s.agents.total} (${by || "none"}; ${s.agents.passivated} passivated)` : "no registry"],
      ["Memory (RSS)", fmtBytes(s.rss_bytes)],
      ["Load", s.load1 === null ? "—" : `${s.load1.toFixed(2)} on ${s.cores} cores`],
      ["System runtime", rt(s.system_runtime)], ["Agent runtime", rt(s.agent_runtime)],
    ];
    const list = $("#system-list");
    list.replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })]));
    if (s.agents && s.agents.total !== lastTotal) {
      lastTotal = s.agents.total;
      scheduleAgents();
    }
  }
  let lastTotal = -1;

  // ---- Applications ---------------------------------------------------
  const restartsSeen = new Map(); // path -> restarts
  const closed = new Set(); // paths the user collapsed
  let lastTree = "";
  function procLine(node, path, top) {
    const line = el("span", { class: "proc", "data-path": path },
      el("span", { class: "name", text: node.name }),
      el("span", { class: "kind", text: node.kind }),
      el("span", { class: `status ${node.status}`, text: node.status }),
      el("span", { class: "meta restarts", "data-restarts": String(node.restarts || 0), text: `restarts ${node.restarts || 0}` }),
      node.starts === undefined ? null
        : el("span", { class: "meta starts", "data-starts": String(node.starts), text: `started ${node.starts}×` }),
      node.mailbox_len === undefined || node.mailbox_len === null ? null
        : el("span", { class: "meta mailbox", text: `mailbox ${node.mailbox_len}` }),
      node.active === undefined || node.active === null ? null
        : el("span", { class: "meta", text: `children ${node.active}/${node.specs}` }));
    if (top) {
      const button = el("button", { type: "button", class: "restart-btn", "data-service": node.name,
        "aria-label": `Restart service ${node.name}`, text: "restart" });
      button.disabled = token() === "";
      button.addEventListener("click", async (e) => {
        e.preventDefault();
        await act("POST", `/api/services/${encodeURIComponent(node.name)}/restart`);
      });
      line.append(button);
    }
    // A crash restart or an admin restart (another start) flashes.
    const seen = (node.restarts || 0) + (node.starts || 0);
    const before = restartsSeen.get(path);
    if (before !== undefined && seen > before) line.classList.add("flash");
    restartsSeen.set(path, seen);
    return line;
  }
  function treeNode(node, path, depth) {
    const kids = node.children || [];
    const li = el("li", { class: depth === 1 ? "service" : null, "data-name": node.name });
    const line = procLine(node, path, depth === 1);
    if (kids.length === 0) {
      li.append(line);
      return li;
    }
    const details = el("details", { "data-path": path });
    details.open = !closed.has(path);
    details.addEventListener("toggle", () => {
      if (details.open) closed.delete(path); else closed.add(path);
    });
    details.append(el("summary", {}, line),
      el("ul", {}, ...kids.map((k) => treeNode(k, `${path}/${k.name}`, depth + 1))));
    li.append(details);
    return li;
  }
  function renderTree(report) {
    const text = JSON.stringify(report.applications);
    if (text === lastTree) return;
    lastTree = text;
    for (const app of report.applications) {
      const box = $(`#tree-${app.name}`) || $("#tree-foundation");
      box.replaceChildren(el("h3", { text: `${app.name} (${(app.children || []).length} services)` }),
        el("ul", {}, treeNode(app, app.name, 0)));
    }
  }

  // ---- Agents ---------------------------------------------------------
  const PAGE = 50;
  const view = { offset: 0, total: 0, sort: "id", desc: false, selected: null };
  let agentsTimer = null, agentsBusy = false, agentsAgain = false;
  function scheduleAgents() {
    if (agentsTimer) return;
    agentsTimer = setTimeout(() => { agentsTimer = null; loadAgents(); }, 150);
  }
  async function loadAgents() {
    if (agentsBusy) { agentsAgain = true; return; }
    agentsBusy = true;
    const asked = performance.now();
    try {
      const q = new URLSearchParams({ offset: view.offset, limit: PAGE, sort: view.sort, desc: view.desc ? "1" : "0" });
      const kind = $("#f-kind").value, status = $("#f-status").value, prefix = $("#f-prefix").value.trim();
      if (kind) q.set("kind", kind);
      if (status) q.set("status", status);
      if (prefix) q.set("prefix", prefix);
      const reply = await fetch(`/api/observer/agents?${q}`);
      if (!reply.ok) return;
      const page = await reply.json();
      renderAgents(page);
      // How long the last page took, request to rendered rows, in ms.
      document.body.dataset.lastPageMs = String(Math.round(performance.now() - asked));
    } catch (_) {
      // The stream's reconnect loop reports the outage.
    } finally {
      agentsBusy = false;
      if (agentsAgain) { agentsAgain = false; scheduleAgents(); }
    }
  }
  function fillKinds(kinds) {
    for (const select of [$("#f-kind"), $("#start-kind")]) {
      if (select.dataset.filled) continue;
      select.dataset.filled = "1";
      for (const k of kinds) select.append(el("option", { value: k, text: k }));
    }
  }
  function renderAgents(page) {
    fillKinds(page.kinds || []);
    view.total = page.total;
    if (view.offset >= page.total && page.total > 0) {
      view.offset = Math.floor((page.total - 1) / PAGE) * PAGE;
      scheduleAgents();
    }
    $("#agents-total").textContent = `${page.total} matching`;
    const focusedId = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.id : null;
    const rows = page.agents.map((a) => {
      const tr = el("tr", { "data-id": a.id, tabindex: "0", "aria-selected": String(view.selected === a.id) },
        el("td", { class: "id", text: a.id }),
        el("td", { text: a.kind }),
        el("td", {}, el("span", { class: `status ${a.status}`, text: a.status })),
        el("td", { class: "restarts", text: String(a.restarts) }),
        el("td", { text: a.passivated ? "yes" : "" }),
        el("td", { text: a.last_exit || "" }));
      return tr;
    });
    $("#agents-table tbody").replaceChildren(...rows);
    // When the first page rendered, in ms from the navigation's start.
    if (!document.body.dataset.firstPageMs && rows.length) {
      document.body.dataset.firstPageMs = String(Math.round(performance.now()));
    }
    if (focusedId) {
      const again = $(`#agents-table tbody tr[data-id="${CSS.escape(focusedId)}"]`);
      if (again) again.focus();
    }
    const last = Math.max(0, Math.ceil(page.total / PAGE) - 1);
    const at = Math.floor(view.offset / PAGE);
    $("#page-info").textContent = `page ${page.total ? at + 1 : 0} of ${last + 1}`;
    $("#page-prev").disabled = $("#page-first").disabled = at === 0;
    $("#page-next").disabled = $("#page-last").disabled = at >= last;
    document.querySelectorAll("#agents-table th button").forEach((b) => {
      if (b.dataset.sort === view.sort) b.setAttribute("aria-sort", view.desc ? "descending" : "ascending");
      else b.removeAttribute("aria-sort");
    });
    // Refreshed while its row is on the page (an agent gone is not asked
    // for: its details stay as last seen).
    if (view.selected && page.agents.some((a) => a.id === view.selected)) loadDetail(view.selected, false);
  }
  const page = (to) => { view.offset = Math.max(0, to); loadAgents(); };
  $("#page-first").addEventListener("click", () => page(0));
  $("#page-prev").addEventListener("click", () => page(view.offset - PAGE));
  $("#page-next").addEventListener("click", () => page(view.offset + PAGE));
  $("#page-last").addEventListener("click", () => page(Math.floor(Math.max(0, view.total - 1) / PAGE) * PAGE));
  document.querySelectorAll("#agents-table th button").forEach((b) => b.addEventListener("click", () => {
    if (view.sort === b.dataset.sort) view.desc = !view.desc; else { view.sort = b.dataset.sort; view.desc = false; }
    page(0);
  }));
  for (const id of ["#f-kind", "#f-status"]) $(id).addEventListener("change", () => page(0));
  $("#f-prefix").addEventListener("input", () => { view.offset = 0; scheduleAgents(); });
  $("#agent-filters").addEventListener("submit", (e) => e.preventDefault());
  const tbody = $("#agents-table tbody");
  tbody.addEventListener("click", (e) => {
    const tr = e.target.closest("tr[data-id]");
    if (tr) loadDetail(tr.dataset.id, true);
  });
  tbody.addEventListener("keydown", (e) => {
    const tr = e.target.closest("tr[data-id]");
    if (!tr) return;
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); loadDetail(tr.dataset.id, true); }
    else if (e.key === "ArrowDown" && tr.nextElementSibling) { e.preventDefault(); tr.nextElementSibling.focus(); }
    else if (e.key === "ArrowUp" && tr.previousElementSibling) { e.preventDefault(); tr.previousElementSibling.focus(); }
    else if (e.key === "PageDown") { e.preventDefault(); $("#page-next").click(); }
    else if (e.key === "PageUp") { e.preventDefault(); $("#page-prev").click(); }
  });
  $("#start-form").addEventListener("submit", async (e) => {
    e.preventDefault();
    const body = { kind: $("#start-kind").value };
    const id = $("#start-id").value.trim();
    if (id) body.id = id;
    const reply = await act("POST", "/api/agents", body);
    if (reply) { $("#start-id").value = ""; say(`started ${reply.id}`, "ok"); scheduleAgents(); }
  });

  async function loadDetail(id, focus) {
    view.selected = id;
    let reply;
    try { reply = await fetch(`/api/observer/agents/${encodeURIComponent(id)}`); } catch (_) { return; }
    const box = $("#agent-detail");
    if (!reply.ok) {
      if (reply.status === 404) { box.hidden = true; view.selected = null; }
      return;
    }
    const a = await reply.json();
    if (view.selected !== id) return;
    $("#agent-detail-h").textContent = `Agent ${a.id}`;
    const facts = [["Kind", a.kind], ["Status", a.status], ["Restarts", a.restarts],
      ["Passivated", a.passivated ? "yes" : "no"], ["Last exit", a.last_exit || "—"],
      ["Started", a.started_at_ms ? fmtTime(a.started_at_ms) : "—"], ["Process", a.process || "—"]];
    $("#agent-facts").replaceChildren(...facts.flatMap(([k, v]) => [el("dt", { text: k }), el("dd", { text: String(v) })]));
    $("#agent-events").replaceChildren(...(a.events || []).map(eventItem));
    box.hidden = false;
    document.querySelectorAll("#agents-table tbody tr").forEach((tr) => tr.setAttribute("aria-selected", String(tr.dataset.id === id)));
    if (focus) box.focus();
  }
  const onAgent = (verb, path) => async () => {
    if (!view.selected) return;
    await act("POST", `/api/agents/${encodeURIComponent(view.selected)}/${path}`);
    scheduleAgents();
  };
  $("#act-stop").addEventListener("click", onAgent("stop", "stop"));
  $("#act-passivate").addEventListener("click", onAgent("passivate", "passivate"));
  $("#act-kill").addEventListener("click", onAgent("kill", "kill"));
  $("#detail-close").addEventListener("click", () => { $("#agent-detail").hidden = true; view.selected = null; });

  // ---- Metrics --------------------------------------------------------
  let samples = [];
  const SERIES = [
    ["starts", "Starts", (s) => s.starts],
    ["restarts", "Restarts", (s) => s.restarts],
    ["exits", "Exits", (s) => Object.values(s.exits || {}).reduce((a, b) => a + b, 0)],
    ["asks", "Asks/s", (s) => s.asks_per_s],
    ["appends", "EventStore appends/s", (s) => s.appends_per_s],
    ["mailbox", "Mailbox length (sum)", (s) => s.mailbox_sum],
    ["mailbox_max", "Mailbox length (largest)", (s) => s.mailbox_max],
  ];
  function spark(values) {
    const w = 300, h = 48, peak = Math.max(0, ...values), max = Math.max(1, peak);
    const step = values.length > 1 ? w / (values.length - 1) : w;
    const points = values.map((v, i) => `${(i * step).toFixed(1)},${(h - 2 - (v / max) * (h - 4)).toFixed(1)}`).join(" ");
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", `0 0 ${w} ${h}`);
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    const line = document.createElementNS("http://www.w3.org/2000/svg", "polyline");
    line.setAttribute("points", points);
    svg.append(line);
    return { svg, max: peak };
  }
  let metricsQueued = false;
  function renderMetrics() {
    if (metricsQueued) return;
    metricsQueued = true;
    requestAnimationFrame(() => {
      metricsQueued = false;
      const boxes = SERIES.map(([key, title, pick]) => {
        const values = samples.map(pick);
        const now = values.length ? values[values.length - 1] : 0;
        const { svg, max } = spark(values);
        svg.setAttribute("aria-label", `${title}: now ${now}, peak ${max}`);
        const box = el("div", { class: "spark", "data-series": key },
          el("h3", {}, el("span", { text: title }), el("span", { class: "now", text: Number.isInteger(now) ? String(now) : now.toFixed(1) })),
          svg,
          el("div", { class: "legend", text: `${samples.length} s, peak ${Number.isInteger(max) ? max : max.toFixed(1)}` }));
        if (key === "exits") {
          const totals = {};
          for (const s of samples) for (const [r, n] of Object.entries(s.exits || {})) totals[r] = (totals[r] || 0) + n;
          const text = Object.entries(totals).filter(([, n]) => n > 0).map(([r, n]) => `${r} ${n}`).join(", ");
          box.append(el("div", { class: "legend", text: `by reason: ${text || "none"}` }));
        }
        return box;
      });
      $("#sparks").replaceChildren(...boxes);
    });
  }

  // ---- Events ---------------------------------------------------------
  const MAX_EVENTS = 300;
  let tail = [];
  function eventItem(e) {
    return el("li", { "data-id": String(e.id), "data-stream": e.stream, "data-kind": e.kind },
      el("span", { class: "pos", text: `#${e.id}` }),
      el("span", { class: "pos", text: fmtTime(e.timestamp_ms) }),
      el("span", { class: "stream", text: e.stream }),
      el("span", { class: "ekind", text: e.kind }),
      el("span", { text: JSON.stringify(e.data) }));
  }
  let eventsQueued = false;
  function renderEvents() {
    if (eventsQueued) return;
    eventsQueued = true;
    requestAnimationFrame(() => {
      eventsQueued = false;
      const stream = $("#e-stream").value.trim(), kind = $("#e-kind").value.trim();
      const shown = tail.filter((e) => e.stream.startsWith(stream) && (!kind || e.kind === kind));
      $("#events-list").replaceChildren(...shown.slice(-MAX_EVENTS).reverse().map(eventItem));
    });
  }
  $("#e-stream").addEventListener("input", renderEvents);
  $("#e-kind").addEventListener("input", renderEvents);
  $("#event-filters").addEventListener("submit", (e) => e.preventDefault());

  // ---- Health and Cluster ---------------------------------------------
  function renderHealth(h) {
    if (!h.services) return;
    $("#health-all").textContent = h.healthy ? "all healthy" : "unhealthy";
    $("#health-table tbody").replaceChildren(...h.services.map((s) => el("tr", { "data-service": s.service },
      el("td", { text: `${s.tree}/${s.service}` }),
      el("td", {}, el("span", { class: `status ${s.health === "healthy" ? "healthy" : "down"}`, text: s.health }),
        el("span", { class: "muted", text: ` at ${fmtTime(s.checked_ms)}` })),
      el("td", {}, el("span", { class: "hist", "aria-label": `${s.history.filter((x) => x.health === "healthy").length} of ${s.history.length} checks healthy` },
        ...s.history.map((x) => el("i", { class: x.health === "healthy" ? null : "bad", title: `${fmtTime(x.t)}: ${x.health}` })))))));
  }
  function renderCluster(members) {
    $("#cluster-table tbody").replaceChildren(...members.map((m) => el("tr", {},
      el("td", { text: m.node + (m.self ? " (this node)" : "") }),
      el("td", { text: m.addr || "—" }),
      el("td", {}, el("span", { class: `status ${m.state === "up" || m.state === "connected" ? "running" : "down"}`, text: m.state })))));
  }

  // ---- the stream -----------------------------------------------------
  let boot = null;
  let source = null;
  const conn = (state, text) => { const c = $("#conn"); c.dataset.state = state; c.textContent = text; };
  function connect() {
    source = new EventSource("/api/observer/stream");
    source.onopen = () => conn("live", "live");
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        // Gave up (a non-200 answer, such as 401 when reads need the
        // token): try again ourselves.
        conn("reconnecting", token() === "" ? "reconnecting… (if reads need the token, enter it)" : "reconnecting…");
        setTimeout(connect, 2000);
      } else {
        conn("reconnecting", "reconnecting…");
      }
    };
    const on = (name, fn) => source.addEventListener(name, (m) => { try { fn(JSON.parse(m.data)); } catch (err) { console.warn(name, err); } });
    on("hello", (h) => {
      if (boot !== null && boot !== h.boot) {
        // A new incarnation of the node: what was shown belongs to the old one.
        restartsSeen.clear();
        lastTree = "";
        view.selected = null;
        $("#agent-detail").hidden = true;
        scheduleAgents();
      }
      boot = h.boot;
      conn("live", "live");
    });
    on("history", (h) => { samples = h; renderMetrics(); });
    on("sample", (s) => { samples.push(s); if (samples.length > 300) samples.shift(); renderMetrics(); });
    on("system", renderSystem);
    on("tree", renderTree);
    on("health", renderHealth);
    on("cluster", renderCluster);
    on("event", (e) => {
      tail.push(e);
      if (tail.length > 2000) tail = tail.slice(-1000);
      renderEvents();
      if (e.stream.startsWith("agent:")) scheduleAgents();
    });
  }
  armed();
  loadAgents();
  connect();
})();
