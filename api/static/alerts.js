// Meltemi alert banner (issue 10): active alerts from /v1/alerts, kept current by the `alert`
// events of /v1/stream. Texts come from each alert's own Greek and English fields; the banner
// says it is not an official warning and links the civil protection. Independent of app.js.
(function () {
  "use strict";
  const OFFICIAL = "https://civilprotection.gov.gr/";
  const NOTE = {
    el: "Υπολογισμένο από τους σταθμούς Meltemi — δεν είναι επίσημη προειδοποίηση.",
    en: "Computed from Meltemi's stations — not an official warning.",
  };
  const OFFICIAL_TEXT = { el: "Επίσημες προειδοποιήσεις", en: "Official warnings" };
  const active = new Map(); // episode id -> {severity, headline {el,en}, area {el,en}, cap}

  function lang() {
    return (document.documentElement.lang || "en").toLowerCase().startsWith("el") ? "el" : "en";
  }

  function container() {
    let box = document.getElementById("meltemi-alerts");
    if (!box) {
      box = document.createElement("section");
      box.id = "meltemi-alerts";
      box.className = "meltemi-alerts";
      box.setAttribute("role", "alert");
      box.setAttribute("aria-live", "assertive");
      document.body.insertBefore(box, document.body.firstChild);
    }
    return box;
  }

  function render() {
    const box = container();
    const l = lang();
    box.replaceChildren();
    box.hidden = active.size === 0;
    for (const [episode, alert] of active) {
      const item = document.createElement("div");
      item.className = "meltemi-alert severity-" + String(alert.severity).toLowerCase();
      item.dataset.episode = episode;
      const title = document.createElement("strong");
      title.textContent = alert.headline[l] || alert.headline.en;
      const link = document.createElement("a");
      link.href = alert.cap;
      link.textContent = "CAP";
      const note = document.createElement("small");
      note.textContent = NOTE[l] + " ";
      const official = document.createElement("a");
      official.href = OFFICIAL;
      official.rel = "noopener";
      official.textContent = OFFICIAL_TEXT[l];
      note.append(official);
      item.append(title, " ", link, document.createElement("br"), note);
      box.append(item);
    }
  }

  function fromList(alert) {
    const last = alert.messages[alert.messages.length - 1];
    return {
      severity: alert.severity,
      headline: alert.headline,
      area: { el: alert.area, en: alert.area },
      cap: new URL(last.cap).pathname,
    };
  }

  async function sync() {
    try {
      const answer = await fetch("/v1/alerts?status=active", {
        headers: { Accept: "application/json" },
        cache: "no-cache", // revalidate: a cached empty list would hide an active alert
      });
      if (!answer.ok) return;
      const body = await answer.json();
      active.clear();
      for (const alert of body.alerts) active.set(alert.id, fromList(alert));
      render();
    } catch (err) {
      // the next stream (re)connection syncs again
    }
  }

  function onAlert(event) {
    let data;
    try {
      data = JSON.parse(event.data);
    } catch (err) {
      return;
    }
    if (data.active) {
      active.set(data.episode, { severity: data.severity, headline: data.headline, area: data.area, cap: data.cap });
    } else {
      active.delete(data.episode);
    }
    render();
  }

  function start() {
    render();
    sync();
    if (!("EventSource" in window)) return;
    const stream = new EventSource("/v1/stream");
    stream.addEventListener("alert", onAlert);
    stream.addEventListener("open", sync);
    new MutationObserver(render).observe(document.documentElement, { attributes: true, attributeFilter: ["lang"] });
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
