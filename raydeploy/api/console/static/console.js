// raydeploy console: the live parts. Everything shown comes from the server already escaped (HTML
// fragments) or is put in as text (log lines): nothing here builds HTML from data.
"use strict";

const POLL_MS = 3000;

// The dashboard's live part: fetched again every POLL_MS and swapped in whole.
function followDashboard(live) {
  const source = live.dataset.src;
  async function refresh() {
    try {
      const response = await fetch(source, { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) {
        showProblem("You are signed out: sign in again to see live updates.");
        return;
      }
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = doc.getElementById("live");
      const current = document.getElementById("live");
      if (fresh && current) {
        current.replaceWith(document.importNode(fresh, true));
      }
    } catch (error) {
      showProblem("The console does not answer; retrying.");
    }
    setTimeout(refresh, POLL_MS);
  }
  setTimeout(refresh, POLL_MS);
}

function showProblem(text) {
  let box = document.getElementById("live-problem");
  if (!box) {
    box = document.createElement("p");
    box.id = "live-problem";
    box.className = "problem";
    box.setAttribute("role", "alert");
    document.querySelector("main").prepend(box);
  }
  box.textContent = text;
}

// A run's log: server-sent events from where the page's copy ends; EventSource resumes by itself
// (Last-Event-ID) after a dropped connection. When the run ends, the page is loaded again with its results.
function followLog(log) {
  if (log.dataset.status !== "running") {
    return;
  }
  log.scrollTop = log.scrollHeight;
  const events = new EventSource(`${log.dataset.stream}?after=${log.dataset.offset}`);
  events.addEventListener("log", (event) => {
    const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 4;
    log.append(document.createTextNode(`${event.data}\n`));
    if (atBottom) {
      log.scrollTop = log.scrollHeight;
    }
  });
  events.addEventListener("end", (event) => {
    events.close();
    const end = JSON.parse(event.data);
    const status = document.getElementById("run-status");
    status.textContent = end.status;
    status.dataset.status = end.status;
    document.getElementById("log-state").textContent = `The run ended: ${end.status}. Loading its results...`;
    setTimeout(() => window.location.reload(), 1500);
  });
}

// A part made behind the page (a fresh plan, a host's facts): fetched once and swapped in whole. When the
// fresh part shows the same plan (data-digest) as the page's, the page keeps its own part, with whatever the
// reader typed or ticked there, and only its age is brought up to date.
async function loadBehind(part) {
  try {
    const response = await fetch(part.dataset.behind, { credentials: "same-origin", cache: "no-store" });
    if (response.status === 401) {
      showProblem("You are signed out: sign in again to see the fresh plan.");
      return;
    }
    const doc = new DOMParser().parseFromString(await response.text(), "text/html");
    const fresh = doc.getElementById(part.id);
    if (!fresh) {
      showProblem(`The fresh part could not be made (HTTP ${response.status}): reload the page.`);
      return;
    }
    if (part.dataset.digest && fresh.dataset.digest === part.dataset.digest) {
      part.removeAttribute("data-behind");
      const age = part.querySelector(".freshness");
      const freshAge = fresh.querySelector(".freshness");
      if (age && freshAge) {
        age.textContent = freshAge.textContent;
      }
      return;
    }
    const changed = Boolean(part.dataset.digest);
    const imported = document.importNode(fresh, true);
    part.replaceWith(imported);
    if (changed) {
      const notice = document.createElement("p");
      notice.className = "problem";
      notice.setAttribute("role", "alert");
      notice.textContent = "The plan changed since this page was made: this is the new one.";
      imported.prepend(notice);
    }
  } catch (error) {
    showProblem("The console does not answer: reload the page.");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  for (const part of document.querySelectorAll("[data-behind]")) {
    loadBehind(part);
  }
  const live = document.getElementById("live");
  if (live) {
    followDashboard(live);
  }
  const log = document.getElementById("log");
  if (log) {
    followLog(log);
  }
});
