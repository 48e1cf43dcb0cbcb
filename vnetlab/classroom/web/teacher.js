// The teacher's page: the class as a grid of students × tasks, following the server live.
"use strict";

(() => {
  const { api, follow, el, banner, ago, MARK } = VNL;
  let tasks = [];
  let latest = null;

  function head(data) {
    const names = (data.exercise && data.exercise.tasks) || [];
    if (names.join("\n") === tasks.join("\n") && document.getElementById("grid-head").children.length) return;
    tasks = names;
    const row = document.getElementById("grid-head");
    row.replaceChildren(el("th", { text: "seat" }), el("th", { text: "student" }), el("th", { text: "lab" }),
      ...tasks.map((t) => el("th", { class: "task", text: t })),
      el("th", { text: "hints" }), el("th", { text: "points" }), el("th", { text: "last activity" }), el("th", { text: "" }));
  }

  function cell(seat, task) {
    const state = task ? task.state : "untried";
    const td = el("td", { class: "mark " + state, "data-seat": seat.seat, "data-task": task ? task.name : "", "data-state": state, text: MARK[state] || state });
    if (task && task.hints_used) td.append(el("span", { class: "hint-count", text: task.hints_used + (task.hints_used === 1 ? " hint" : " hints") }));
    td.title = task ? task.name + ": " + state + (task.hints_used ? ", " + task.hints_used + " hint(s)" : "") : "";
    return td;
  }

  function render(data) {
    latest = data;
    document.getElementById("title").textContent = ((data.exercise && data.exercise.title) || "Class") + " — class " + data.class;
    const up = data.seats.filter((s) => s.phase === "up").length;
    document.getElementById("summary").textContent = data.seats.length + " seats, " + up + " up, " + data.terminals_open + " terminal(s) open";
    head(data);
    const body = document.getElementById("grid-body");
    const rows = data.seats.map((seat) => {
      const byName = Object.fromEntries(seat.tasks.map((t) => [t.name, t]));
      const lab = seat.phase === "up" ? "up" : seat.phase + (seat.progress ? ": " + seat.progress : "") + (seat.error ? ": " + seat.error : "");
      const reset = el("button", { type: "button", class: "reset", "data-seat": seat.seat, text: "Reset" });
      reset.addEventListener("click", () => resetSeat(seat));
      const tr = el("tr", { "data-seat": seat.seat },
        el("td", { text: seat.seat }), el("td", { text: seat.name }),
        el("td", { class: "phase " + seat.phase, text: lab + (seat.checking ? " (checking…)" : "") }),
        ...tasks.map((name) => cell(seat, byName[name])),
        el("td", { class: "num", text: String(seat.hints_used) }),
        el("td", { class: "num", text: seat.points === null || seat.points === undefined ? "—" : String(seat.points) }),
        el("td", { class: "ago", "data-when": seat.last_activity || "", text: ago(seat.last_activity, data.now) }),
        el("td", {}, reset));
      return tr;
    });
    body.replaceChildren(...rows);
  }

  async function resetSeat(seat) {
    if (!confirm("Rebuild " + seat.name + "'s lab (" + seat.seat + ") from scratch? Their work in the lab and their exercise state start over.")) return;
    try {
      await api("POST", "/api/class/reset", { seat: seat.seat });
      banner("");
    } catch (error) {
      banner("Reset of " + seat.seat + " failed: " + error.message);
    }
  }

  document.getElementById("grades").addEventListener("click", async () => {
    const note = document.getElementById("grades-note");
    note.textContent = "grading…";
    try {
      const blob = await api("GET", "/api/class/grades.csv");
      const link = el("a", { href: URL.createObjectURL(blob), download: (latest ? latest.class : "class") + "-grades.csv" });
      document.body.append(link);
      link.click();
      link.remove();
      note.textContent = "";
    } catch (error) {
      note.textContent = error.message;
    }
  });

  setInterval(() => {  // "last activity" ages between updates
    for (const td of document.querySelectorAll("td.ago")) td.textContent = ago(Number(td.dataset.when), Date.now() / 1000);
  }, 10000);

  follow("/api/class", render, document.getElementById("live"));
})();
