// The student's page: the exercise, its tasks with Check / Hint / answer, terminals on the
// exercise's guests (xterm.js over a WebSocket) and the network drawing with its links' state.
"use strict";

(() => {
  const { token, api, follow, el, banner, ago, MARK } = VNL;
  const PASTE_MAX = 1 << 20;  // a paste above 1 MiB is refused here; the server bounds what comes anyway
  const FRAME = 16 * 1024;    // bytes per WebSocket message (the server takes at most 64 KiB)
  const cards = new Map();    // task name → its elements
  const terminals = new Map(); // node → {term, fit, socket, pane, tab}
  let current = null;          // the seat as last rendered
  let drawnFor = null;         // the seat version whose lab the drawing shows

  // -- tasks ----------------------------------------------------------------------------

  function card(task) {
    const mark = el("span", { class: "state" });
    const name = el("span", { class: "name", text: task.name });
    const points = el("span", { class: "points" });
    const text = el("div", { class: "text markdown" });
    const hints = el("ol", { class: "hints" });
    const details = el("pre", { class: "details" });
    const note = el("span", { class: "note" });
    const check = el("button", { type: "button", class: "check", text: "Check" });
    const hint = el("button", { type: "button", class: "hint", text: "Hint" });
    const buttons = el("div", { class: "buttons" }, check, hint, note);
    const li = el("li", { class: "task", "data-task": task.name }, el("div", { class: "task-head" }, mark, name, points), text);
    let answer = null;
    if (task.answer) {
      answer = el("input", { type: "text", class: "answer", placeholder: "your answer", maxlength: "2000", "aria-label": "answer to " + task.name });
      const send = el("button", { type: "button", class: "send-answer", text: "Send answer" });
      send.addEventListener("click", () => sendAnswer(task.name, answer, note));
      answer.addEventListener("keydown", (e) => { if (e.key === "Enter") sendAnswer(task.name, answer, note); });
      li.append(el("div", { class: "answer-box" }, answer, send));
    }
    li.append(buttons, hints, details);
    check.addEventListener("click", () => runCheck(task.name, check, note));
    hint.addEventListener("click", () => askHint(task.name, hint, note));
    const parts = { li, mark, points, text, hints, details, note, check, hint, html: null, hintCount: -1 };
    cards.set(task.name, parts);
    return parts;
  }

  function renderTask(task) {
    const c = cards.get(task.name) || card(task);
    c.li.dataset.state = task.state;
    c.li.className = "task " + task.state;
    c.mark.textContent = MARK[task.state] || task.state;
    c.mark.title = task.state === "untried" ? "not tried yet" : task.state;
    const earned = task.earned === null || task.earned === undefined ? "" : task.earned + " / ";
    c.points.textContent = task.points === null || task.points === undefined ? "" : earned + task.points + " pt";
    if (c.html !== task.html) {  // rendered by the server from the exercise's markdown, raw HTML off
      c.text.innerHTML = task.html;
      c.html = task.html;
    }
    if (c.hintCount !== task.hints.length) {
      c.hints.replaceChildren(...task.hints.map((h) => { const li = el("li", { class: "markdown" }); li.innerHTML = h; return li; }));
      c.hintCount = task.hints.length;
    }
    c.hint.hidden = task.hints_total === 0;
    c.hint.disabled = task.hints_left === 0;
    c.hint.textContent = task.hints_left === 0 ? "No more hints" : "Hint (" + task.hints_left + " left)";
    c.details.textContent = task.details || "";  // a check's details may quote a guest: text only
    c.details.hidden = !task.details;
    return c.li;
  }

  async function runCheck(task, button, note) {
    button.disabled = true;
    note.textContent = "checking…";
    try {
      const answer = await api("POST", "/api/seat/check", task ? { task } : {});
      note.textContent = answer.result.passed ? "passed" : "not yet: see the details";
      render(answer.seat);
    } catch (error) {
      note.textContent = error.message;
    } finally {
      button.disabled = false;
    }
  }

  async function askHint(task, button, note) {
    button.disabled = true;
    try {
      const answer = await api("POST", "/api/seat/hint", { task });
      note.textContent = "";
      render(answer.seat);
    } catch (error) {
      note.textContent = error.message;
      button.disabled = false;
    }
  }

  async function sendAnswer(task, input, note) {
    note.textContent = "checking your answer…";
    try {
      const answer = await api("POST", "/api/seat/answer", { task, value: input.value });
      note.textContent = answer.result.passed ? "right" : "not right yet";
      render(answer.seat);
    } catch (error) {
      note.textContent = error.message;
    }
  }

  // -- the seat ---------------------------------------------------------------------------

  function render(seat) {
    current = seat;
    const ex = seat.exercise;
    document.title = (ex.title || "Exercise") + " — vnetlab classroom";
    document.getElementById("title").textContent = ex.title || "Exercise";
    document.getElementById("who").textContent = seat.student + " (seat " + seat.seat + ")";
    const intro = document.getElementById("intro");
    if (intro.dataset.html !== ex.intro_html) { intro.innerHTML = ex.intro_html; intro.dataset.html = ex.intro_html; }
    clock();
    if (seat.phase !== "up") banner("Your lab is " + seat.phase + (seat.progress ? ": " + seat.progress : "") + (seat.error ? " — " + seat.error : "") + ". This page updates by itself.");
    else banner("");
    const list = document.getElementById("tasks");
    const items = seat.tasks.map(renderTask);
    if (items.length !== list.children.length || items.some((li, i) => list.children[i] !== li)) list.replaceChildren(...items);
    for (const c of cards.values()) c.check.disabled = seat.phase !== "up" || (seat.checking !== null && seat.checking !== undefined);
    document.getElementById("check-all").disabled = seat.phase !== "up";
    lastCheck(seat.last_check);
    evidence(seat.evidence || []);
    if (seat.phase === "up") {
      tabs(seat.terminals);
      if (drawnFor === null) drawTopology();
    } else {
      drawnFor = null;
    }
  }

  function clock() {
    if (!current) return;
    const ex = current.exercise;
    const used = typeof ex.started === "number" ? Math.max(0, Math.round((Date.now() / 1000 - ex.started) / 60)) + " min" : "";
    const limit = ex.time_limit ? " of " + ex.time_limit : "";
    const points = typeof ex.points === "number" ? " · " + ex.points + " / " + ex.max_points + " pt" : "";
    document.getElementById("clock").textContent = (used ? " · " + used + limit : (ex.time_limit ? " · time: " + ex.time_limit : "")) + points;
  }

  function lastCheck(check) {
    const box = document.getElementById("last-check");
    if (!check || !check.at) { box.hidden = true; return; }
    box.hidden = false;
    document.getElementById("last-check-when").textContent = (check.task || "all tasks") + ", " + (check.passed ? "passed" : "not passed") + ", " + ago(check.at, Date.now() / 1000);
    document.getElementById("last-check-output").textContent = [check.error || "", check.output || ""].join("\n").trim();
  }

  function evidence(names) {
    const box = document.getElementById("evidence");
    box.hidden = names.length === 0;
    document.getElementById("evidence-list").replaceChildren(...names.map((name) => {
      const link = el("a", { href: "#", text: name });
      link.addEventListener("click", async (e) => {
        e.preventDefault();
        const blob = await api("GET", "/api/seat/evidence/" + encodeURIComponent(name));
        const a = el("a", { href: URL.createObjectURL(blob), download: name });
        document.body.append(a); a.click(); a.remove();
      });
      return el("li", {}, link);
    }));
  }

  document.getElementById("check-all").addEventListener("click", (e) => runCheck(null, e.target, document.getElementById("submitted")));
  document.getElementById("submit").addEventListener("click", async (e) => {
    const note = document.getElementById("submitted");
    e.target.disabled = true;
    note.textContent = "submitting…";
    try {
      const answer = await api("POST", "/api/seat/submit", {});
      note.textContent = "submitted (" + answer.submitted + "); you may submit again later";
      render(answer.seat);
    } catch (error) {
      note.textContent = error.message;
    } finally {
      e.target.disabled = false;
    }
  });

  // -- the network drawing ---------------------------------------------------------------

  async function drawTopology() {
    drawnFor = current.version;
    try {
      const blob = await api("GET", "/api/seat/topology.svg");
      const doc = new DOMParser().parseFromString(await blob.text(), "image/svg+xml");
      const svg = doc.documentElement;
      for (const bad of svg.querySelectorAll("script, foreignObject, iframe")) bad.remove();
      for (const node of svg.querySelectorAll("*")) {
        for (const attr of [...node.attributes]) {
          if (attr.name.startsWith("on") || /^\s*javascript:/i.test(attr.value)) node.removeAttribute(attr.name);
        }
      }
      svg.removeAttribute("width");
      svg.removeAttribute("height");
      document.getElementById("drawing").replaceChildren(document.importNode(svg, true));
      links();
    } catch (error) {
      document.getElementById("drawing").textContent = "no drawing: " + error.message;
      drawnFor = null;
    }
  }

  async function links() {
    if (!current || current.phase !== "up") return;
    try {
      const answer = await api("GET", "/api/seat/links");
      const edges = new Map();
      for (const g of document.querySelectorAll("#drawing g.edge")) {
        const title = g.querySelector("title");
        if (title) edges.set(title.textContent, (edges.get(title.textContent) || []).concat([g]));
      }
      const used = new Map();
      const rows = answer.links.map((link) => {
        const list = edges.get(link.edge) || [];
        const index = used.get(link.edge) || 0;
        used.set(link.edge, index + 1);
        const g = list[index];
        if (g) g.setAttribute("class", "edge link-" + link.state);
        const rate = link.frames_per_s === null || link.frames_per_s === undefined ? "" : String(link.frames_per_s);
        return el("tr", { class: "link-" + link.state },
          el("td", { text: link.vm + " " + link.nic + " — " + link.bridge }),
          el("td", { text: link.state + " (" + link.detail + ")" }), el("td", { class: "num", text: rate }));
      });
      document.querySelector("#links tbody").replaceChildren(...rows);
    } catch (error) {
      /* the next round tries again */
    }
  }
  setInterval(() => { if (!document.hidden) links(); }, 3000);

  // -- terminals ----------------------------------------------------------------------------

  function tabs(nodes) {
    const nav = document.getElementById("tabs");
    if (nav.dataset.nodes === nodes.join(",")) return;
    nav.dataset.nodes = nodes.join(",");
    nav.replaceChildren(...nodes.map((node) => {
      const tab = el("button", { type: "button", class: "tab", "data-node": node, text: node });
      tab.addEventListener("click", () => show(node));
      return tab;
    }));
    if (nodes.length && !document.querySelector(".tab.active")) show(nodes[0]);
    if (!nodes.length) document.getElementById("term-status").textContent = "this exercise opens no terminal";
  }

  function show(node) {
    for (const tab of document.querySelectorAll(".tab")) tab.classList.toggle("active", tab.dataset.node === node);
    for (const [name, t] of terminals) t.pane.hidden = name !== node;
    const t = terminals.get(node) || open(node);
    t.pane.hidden = false;
    t.fit.fit();
    t.term.focus();
    document.getElementById("term-status").textContent = t.status;
  }

  function open(node) {
    const pane = el("div", { class: "term", id: "term-" + node, "data-node": node });
    document.getElementById("terms").append(pane);
    const term = new Terminal({ cursorBlink: true, fontSize: 14, scrollback: 2000, convertEol: false, fontFamily: "DejaVu Sans Mono, Menlo, monospace" });
    const fit = new FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(pane);
    fit.fit();
    const t = { term, fit, pane, socket: null, status: "" };
    terminals.set(node, t);
    const encoder = new TextEncoder();
    term.onData((data) => {
      if (data.length > PASTE_MAX) {
        term.write("\r\n\x1b[31m[paste of " + Math.round(data.length / 1024) + " KiB refused: at most " + PASTE_MAX / 1024 + " KiB at once]\x1b[0m\r\n");
        return;
      }
      if (!t.socket || t.socket.readyState !== WebSocket.OPEN) return;
      const bytes = encoder.encode(data);
      for (let i = 0; i < bytes.length; i += FRAME) t.socket.send(bytes.subarray(i, i + FRAME));
    });
    term.onResize(({ cols, rows }) => { if (t.socket && t.socket.readyState === WebSocket.OPEN) t.socket.send(JSON.stringify({ resize: [cols, rows] })); });
    connect(node, t);
    return t;
  }

  function say(node, t, text) {
    t.status = text;
    if (!t.pane.hidden) document.getElementById("term-status").textContent = text;
    t.pane.dataset.status = text;
  }

  function connect(node, t) {
    const socket = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws/terminal");
    socket.binaryType = "arraybuffer";
    t.socket = socket;
    socket.addEventListener("open", () => socket.send(JSON.stringify({ token, node, cols: t.term.cols, rows: t.term.rows })));
    socket.addEventListener("message", (event) => {
      if (typeof event.data === "string") {
        const message = JSON.parse(event.data);
        say(node, t, message.status);
        if (message.closed) t.term.write("\r\n\x1b[33m[" + message.status + "]\x1b[0m\r\n");
      } else {
        t.term.write(new Uint8Array(event.data));
      }
    });
    socket.addEventListener("close", () => {
      t.pane.dataset.connected = "no";
      const again = el("button", { type: "button", class: "reconnect", text: "Reconnect " + node });
      again.addEventListener("click", () => { again.remove(); t.term.reset(); connect(node, t); });
      t.pane.append(again);
    });
    socket.addEventListener("open", () => { t.pane.dataset.connected = "yes"; });
  }

  window.addEventListener("resize", () => { for (const t of terminals.values()) if (!t.pane.hidden) t.fit.fit(); });
  setInterval(clock, 30000);
  follow("/api/seat", render, document.getElementById("live"));
})();
