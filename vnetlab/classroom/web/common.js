// What both pages share: the token (from the page's own address, never sent anywhere but in the
// Authorization header), the API, and a long-poll loop that follows the server's versions.
"use strict";

const VNL = (() => {
  const token = decodeURIComponent(location.pathname.split("/")[2] || "");

  async function api(method, path, body) {
    const options = { method, headers: { Authorization: "Bearer " + token }, cache: "no-store" };
    if (body !== undefined) {
      options.headers["Content-Type"] = "application/json";
      options.body = JSON.stringify(body);
    }
    const answer = await fetch(path, options);
    const type = answer.headers.get("Content-Type") || "";
    const data = type.startsWith("application/json") ? await answer.json() : await answer.blob();
    if (!answer.ok) {
      const message = data && data.error ? data.error : "HTTP " + answer.status;
      throw Object.assign(new Error(message), { status: answer.status, data });
    }
    return data;
  }

  // Calls render(data) with each newer version of `path`, for as long as the page is open.
  async function follow(path, render, liveElement) {
    let version = 0;
    for (;;) {
      try {
        const data = await api("GET", path + (path.includes("?") ? "&" : "?") + "after=" + version);
        version = data.version;
        liveElement.textContent = "live";
        liveElement.className = "live on";
        render(data);
      } catch (error) {
        liveElement.textContent = error.status === 401 ? "this link is no longer valid" : "reconnecting…";
        liveElement.className = "live off";
        await new Promise((resolve) => setTimeout(resolve, 3000));
      }
    }
  }

  // An element with text only: anything a student or a guest wrote is never parsed as HTML.
  function el(tag, attributes, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attributes || {})) {
      if (key === "class") node.className = value;
      else if (key === "text") node.textContent = value;
      else node.setAttribute(key, value);
    }
    for (const child of children) node.append(child);
    return node;
  }

  function banner(text) {
    const node = document.getElementById("banner");
    node.textContent = text || "";
    node.hidden = !text;
  }

  function ago(seconds, now) {
    if (!seconds) return "—";
    const s = Math.max(0, Math.round(now - seconds));
    if (s < 60) return s + " s ago";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    return Math.round(s / 3600) + " h ago";
  }

  const MARK = { passed: "✓", failed: "✗", untried: "·" };

  return { token, api, follow, el, banner, ago, MARK };
})();
