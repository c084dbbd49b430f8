// Meltemi alert banner (issue 10): active alerts from /v1/alerts, kept current by the `alert`
// events of /v1/stream. In Greek and English the texts are each alert's own; in every other page
// language the banner says what the alert is about and its colour from the page's message
// catalogue (/static/i18n/<lang>.json: alert.*), with the area's name. It always says it is not
// an official warning and links the civil protection. Independent of app.js.
(function () {
  "use strict";
  const OFFICIAL = "https://civilprotection.gov.gr/";
  const NOTE = {
    el: "Υπολογισμένο από τους σταθμούς Meltemi — δεν είναι επίσημη προειδοποίηση.",
    en: "Computed from Meltemi's stations — not an official warning.",
  };
  const OFFICIAL_TEXT = { el: "Επίσημες προειδοποιήσεις", en: "Official warnings" };
  const active = new Map(); // episode id -> {severity, hazard, headline {el,en}, area {el,en}, cap}
  // Catalogue keys by the alert's hazard and by CAP severity (MeteoAlarm's colours).
  const HAZARD_KEY = {
    heat: "alert.heat",
    air: "alert.dust",
    fire: "alert.fire",
    station: "alert.station",
    other: "alert.other",
  };
  const COLOUR_KEY = {
    Minor: "alert.green",
    Moderate: "alert.yellow",
    Severe: "alert.orange",
    Extreme: "alert.red",
  };
  const catalogues = new Map(); // language -> catalogue, or null when it could not be read

  function pageLang() {
    return (document.documentElement.lang || "en").toLowerCase().split("-")[0];
  }

  function ownTexts(l) {
    return l === "el" || l === "en";
  }

  function loadCatalogue(l) {
    if (catalogues.has(l)) return;
    catalogues.set(l, null);
    fetch("/static/i18n/" + encodeURIComponent(l) + ".json")
      .then((answer) => (answer.ok ? answer.json() : null))
      .then((catalogue) => {
        if (catalogue) {
          catalogues.set(l, catalogue);
          render();
        }
      })
      .catch(() => {});
  }

  // The banner's texts in the page language: the alert's own (el, en), else the catalogue's;
  // English until a catalogue has arrived, so that an alert is never hidden by a slow fetch.
  function texts(alert) {
    const l = pageLang();
    const catalogue = ownTexts(l) ? null : catalogues.get(l);
    if (!ownTexts(l)) loadCatalogue(l);
    if (!catalogue) {
      const own = ownTexts(l) ? l : "en";
      return {
        lang: own,
        title: alert.headline[own] || alert.headline.en,
        note: NOTE[own],
        official: OFFICIAL_TEXT[own],
      };
    }
    const what = catalogue[HAZARD_KEY[alert.hazard] || "alert.other"];
    const colour = catalogue[COLOUR_KEY[alert.severity]] || "";
    const area = alert.area.en;
    return {
      lang: l,
      title: what + " — " + colour + (area ? " — " + area : ""),
      note: catalogue["alert.note"],
      official: catalogue["alert.officialLink"],
    };
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
    box.replaceChildren();
    box.hidden = active.size === 0;
    for (const [episode, alert] of active) {
      const item = document.createElement("div");
      item.className = "meltemi-alert severity-" + String(alert.severity).toLowerCase();
      item.dataset.episode = episode;
      const words = texts(alert);
      item.lang = words.lang;
      const title = document.createElement("strong");
      title.textContent = words.title;
      const link = document.createElement("a");
      link.href = alert.cap;
      link.textContent = "CAP";
      const note = document.createElement("small");
      note.textContent = words.note + " ";
      const official = document.createElement("a");
      official.href = OFFICIAL;
      official.rel = "noopener";
      official.textContent = words.official;
      note.append(official);
      item.append(title, " ", link, document.createElement("br"), note);
      box.append(item);
    }
  }

  function fromList(alert) {
    const last = alert.messages[alert.messages.length - 1];
    return {
      severity: alert.severity,
      hazard: alert.hazard,
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
      active.set(data.episode, {
        severity: data.severity,
        hazard: data.hazard,
        headline: data.headline,
        area: data.area,
        cap: data.cap,
      });
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
