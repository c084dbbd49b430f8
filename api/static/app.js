/* Meltemi public dashboard: plain JavaScript, no build chain; uPlot (vendored) draws the chart.
   Data: /v1/stations, /v1/parameters, /v1/latest, /v1/stations/{id}/series, live /v1/stream. */
(function () {
  "use strict";

  const TZ = "Europe/Athens";
  const SVG_NS = "http://www.w3.org/2000/svg";
  const AGE_REFRESH_MS = 15000;
  const CHART_REFRESH_MS = 5 * 60000;
  const OFFLINE_AFTER_MS = 15 * 60000; // no status and no reading for 15 min: shown offline

  // Chart periods and their aggregation windows (issue 5: 24 h -> 10m, 7 d -> 1h, 30 d -> 3h).
  const RANGES = {
    "24h": { hours: 24, interval: "10m" },
    "7d": { hours: 24 * 7, interval: "1h" },
    "30d": { hours: 24 * 30, interval: "3h" },
  };

  // NWS heat index categories in °C (80, 90, 103 and 125 °F), highest first.
  const HEAT_CATEGORIES = [
    ["extreme_danger", 51.7],
    ["danger", 39.4],
    ["extreme_caution", 32.2],
    ["caution", 26.7],
  ];
  // Environment Canada's humidex degrees of comfort, highest first.
  const HUMIDEX_LEVELS = [["hx_danger", 46], ["hx_great", 40], ["hx_some", 30]];

  const PARAM_ORDER = [
    "air_temperature", "apparent_temperature", "heat_index", "humidex", "dew_point",
    "relative_humidity", "air_pressure", "wind_speed", "wind_gust", "wind_direction",
    "precipitation", "solar_radiation", "uv_index", "pm1", "pm2_5", "pm10",
  ];
  const DIGITS = { relative_humidity: 0, wind_direction: 0, solar_radiation: 0, pm1: 0, pm2_5: 0, pm10: 0, air_pressure: 1 };

  // Town centres of the plain (WGS84) and an approximate coastline of the Bay of Elefsina.
  const TOWNS = [
    ["Elefsina", 38.0414, 23.5425], ["Aspropyrgos", 38.0606, 23.5927],
    ["Magoula", 38.0810, 23.5210], ["Mandra", 38.0667, 23.4990],
    ["Fyli", 38.0990, 23.6640], ["Ano Liosia", 38.0830, 23.7000],
  ];
  const COAST = [
    [38.021, 23.47], [38.026, 23.49], [38.031, 23.51], [38.0355, 23.53], [38.0355, 23.545],
    [38.034, 23.56], [38.032, 23.575], [38.0295, 23.59], [38.024, 23.598], [38.015, 23.602],
    [38.0, 23.603],
  ];

  // Message catalogues: one JSON file per language under /static/i18n/, the same keys in each
  // (tests/test_i18n.py). A value is a string with {placeholders}, or a plural object keyed by
  // the language's Intl.PluralRules categories. English is the fallback for a missing key: in
  // production it is shown in English (a static element also gets lang="en"), warned on the
  // console and listed in <html data-i18n-missing>; with ?i18n=test it is shown as ⟦key⟧ text.
  const LANGS = ["el", "en", "sq", "ar", "fa", "ur", "uk", "ka"];
  const DEFAULT_LANG = "el";
  const FALLBACK_LANG = "en";
  // Browser language tags that mean one of ours: Dari (prs) reads the Persian catalogue.
  const LANG_ALIASES = { prs: "fa", "fa-af": "fa" };
  const STORAGE_KEY = "meltemi.lang";
  const TEST_MODE = new URLSearchParams(location.search).get("i18n") === "test";

  // Plain-language levels (sensors/heat.py, sensors/fwi.py, sensors/airquality.py ids), lowest
  // first. The heat-index and discomfort levels of a station are computed here from its latest
  // values; the air-quality level from its latest PM values (indicative: the EAQI is defined on
  // hourly means); the fire-weather class is daily and not on this page yet.
  const DI_LOWER_BOUNDS = [[32, "medical_emergency"], [29, "severe_stress"], [27, "most_discomfort"], [24, "over_half_discomfort"], [21, "under_half_discomfort"]];
  const EAQI_LEVELS = ["good", "fair", "moderate", "poor", "very_poor", "extremely_poor"];
  const EAQI_UPPER_EDGES = { pm2_5: [5, 15, 50, 90, 140], pm10: [15, 45, 120, 195, 270] };
  const SCALES = [
    { id: "heat_index", levels: ["none", "caution", "extreme_caution", "danger", "extreme_danger"], level: (id) => heatCategory(currentValue(id, "heat_index")) },
    { id: "discomfort", levels: ["no_discomfort", "under_half_discomfort", "over_half_discomfort", "most_discomfort", "severe_stress", "medical_emergency"], level: (id) => discomfortClass(currentValue(id, "air_temperature"), currentValue(id, "relative_humidity")) },
    { id: "fire", levels: ["very_low", "low", "moderate", "high", "very_high", "extreme"], level: () => null, note: "scaleNote.fire" },
    { id: "air", levels: EAQI_LEVELS, level: (id) => airLevel(id), note: "scaleNote.air" },
  ];

  // Viridis, sampled: perceptually uniform and readable for colour-blind visitors.
  const COMPASS = ["N", "NE", "E", "SE", "S", "SW", "W", "NW"];
  const PALETTE = ["#440154", "#414487", "#2a788e", "#22a884", "#7ad151", "#fde725"];

  const state = {
    lang: DEFAULT_LANG,
    catalogues: new Map(),
    missing: new Set(),
    stations: [],
    byId: new Map(),
    params: new Map(),
    latest: new Map(),
    status: new Map(),
    parameter: "air_temperature",
    station: null,
    range: "24h",
    chart: null,
    chartToken: 0,
    source: null,
  };

  const $ = (id) => document.getElementById(id);

  // --- messages ---------------------------------------------------------------------------

  function catalogue(lang) {
    return state.catalogues.get(lang) || {};
  }
  function reportMissing(key) {
    if (state.missing.has(state.lang + ":" + key)) return;
    state.missing.add(state.lang + ":" + key);
    console.warn("meltemi i18n: no \"" + key + "\" in the " + state.lang + " catalogue; shown in English");
    document.documentElement.dataset.i18nMissing = [...state.missing].join(" ");
  }
  // The message of a key, falling back to English (see above); {name} placeholders from vars.
  function lookup(key) {
    const own = catalogue(state.lang)[key];
    if (own !== undefined) return { value: own, fallback: false };
    reportMissing(key);
    const english = catalogue(FALLBACK_LANG)[key];
    return { value: english === undefined ? key : english, fallback: true };
  }
  function fill(text, vars) {
    return String(text).replace(/\{(\w+)\}/g, (m, name) => {
      if (!vars || !(name in vars)) return m;
      const v = vars[name];
      return typeof v === "number" ? new Intl.NumberFormat(locale()).format(v) : String(v);
    });
  }
  function mark(text, key, fallback) {
    return fallback && TEST_MODE ? "⟦" + key + "⟧ " + text : text;
  }
  function t(key, vars) {
    const { value, fallback } = lookup(key);
    const text = typeof value === "string" ? value : (value && value.other) || key;
    return mark(fill(text, vars), key, fallback);
  }
  // A counted message: the plural category of count in this language (Intl.PluralRules).
  function tp(key, count, vars) {
    const { value, fallback } = lookup(key);
    const category = new Intl.PluralRules(locale()).select(count);
    let text = value && typeof value === "object" ? value[category] : undefined;
    let missing = fallback;
    if (text === undefined) {
      reportMissing(key + "." + category);
      missing = true;
      text = (catalogue(FALLBACK_LANG)[key] || {}).other || key;
    }
    return mark(fill(text, { ...vars, count }), key, missing);
  }
  const has = (key) => Object.prototype.hasOwnProperty.call(catalogue(state.lang), key);
  const locale = () => catalogue(state.lang)["meta.locale"] || "en-GB";

  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "text") node.textContent = v;
      else if (k === "className") node.className = v;
      else node.setAttribute(k, v);
    }
    for (const child of children || []) if (child) node.append(child);
    return node;
  }
  // Station names and numbers with units are isolated from the text around them (RTL pages).
  const bdi = (text) => el("bdi", { text });
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }

  // --- formatting -------------------------------------------------------------------------

  function paramName(id) {
    if (catalogue(FALLBACK_LANG)["param." + id] !== undefined) return t("param." + id);
    return (state.params.get(id) || {}).name || id;
  }
  function unitOf(id) {
    const raw = (state.params.get(id) || {}).unit || "";
    if (raw === "1") return "";
    return catalogue(FALLBACK_LANG)["unit." + raw] !== undefined ? t("unit." + raw) : raw;
  }
  function formatNumber(id, value) {
    const digits = Object.prototype.hasOwnProperty.call(DIGITS, id) ? DIGITS[id] : 1;
    return new Intl.NumberFormat(locale(), { maximumFractionDigits: digits, minimumFractionDigits: digits }).format(value);
  }
  function formatValue(id, value) {
    if (value === undefined || value === null || Number.isNaN(value)) return "—";
    const unit = unitOf(id);
    let text = formatNumber(id, value) + (unit ? (unit === "°" || unit === "%" ? "" : "\u00a0") + unit : "");
    if (id === "wind_direction") text += " " + t("compass." + COMPASS[Math.round(value / 45) % 8]);
    return text;
  }
  function formatTime(iso) {
    return new Intl.DateTimeFormat(locale(), { timeZone: TZ, dateStyle: "medium", timeStyle: "short" }).format(new Date(iso));
  }
  function formatAge(iso) {
    const seconds = Math.round((Date.parse(iso) - Date.now()) / 1000);
    const rtf = new Intl.RelativeTimeFormat(locale(), { numeric: "auto", style: "long" });
    const abs = Math.abs(seconds);
    if (abs < 60) return rtf.format(seconds, "second");
    if (abs < 3600) return rtf.format(Math.round(seconds / 60), "minute");
    if (abs < 86400) return rtf.format(Math.round(seconds / 3600), "hour");
    return rtf.format(Math.round(seconds / 86400), "day");
  }
  function municipality(name) {
    return catalogue(FALLBACK_LANG)["place." + name] !== undefined ? t("place." + name) : name;
  }
  function stationName(s) {
    return String(s.name).split(", ").map(municipality).join(", ");
  }

  // --- data -------------------------------------------------------------------------------

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(url + ": HTTP " + response.status);
    return response.json();
  }
  const listOf = (body, key) => (Array.isArray(body) ? body : (body && body[key]) || []);

  function stationOnline(id) {
    const status = state.status.get(id);
    if (status === "online" || status === "offline") return status === "online";
    const entry = state.latest.get(id);
    return Boolean(entry && Date.now() - Date.parse(entry.ts) < OFFLINE_AFTER_MS);
  }

  function mergeEntry(entry) {
    const old = state.latest.get(entry.station);
    if (old && Date.parse(old.ts) > Date.parse(entry.ts)) return false; // never replace newer
    const merged = old ? { ...old, ts: entry.ts, values: { ...old.values, ...entry.values }, qc: { ...old.qc, ...entry.qc } } : entry;
    state.latest.set(entry.station, merged);
    return true;
  }

  function availableParameters() {
    const have = new Set();
    for (const s of state.stations) for (const p of s.parameters || []) have.add(p);
    // Derived parameters and their inputs come from /v1/parameters (derived: true, inputs).
    for (const spec of state.params.values()) if (spec.derived && !spec.min_interval && spec.inputs.every((p) => have.has(p))) have.add(spec.id);
    const order = (id) => { const i = PARAM_ORDER.indexOf(id); return i < 0 ? 99 : i; };
    return [...have].sort((a, b) => order(a) - order(b));
  }

  // --- controls ---------------------------------------------------------------------------

  function renderControls() {
    const pSel = $("parameter");
    pSel.replaceChildren(...availableParameters().map((id) => {
      const unit = unitOf(id);
      // An option cannot hold <bdi>: on right-to-left pages the unit is isolated with LRI/PDI.
      const isolated = document.documentElement.dir === "rtl" ? "\u2066" + unit + "\u2069" : unit;
      return el("option", { value: id, text: paramName(id) + (unit ? " (" + isolated + ")" : "") });
    }));
    pSel.value = state.parameter;
    const sSel = $("station");
    sSel.replaceChildren(...state.stations.map((s) => el("option", { value: s.id, text: stationName(s) })));
    if (state.station) sSel.value = state.station;
    for (const button of document.querySelectorAll("[data-range]")) {
      button.setAttribute("aria-pressed", String(button.dataset.range === state.range));
    }
  }

  function selectStation(id, focusChart) {
    if (!state.byId.has(id)) return;
    state.station = id;
    $("station").value = id;
    for (const node of document.querySelectorAll("[data-station]")) {
      node.classList.toggle("selected", node.dataset.station === id);
    }
    loadChart();
    if (focusChart) $("chart-h").scrollIntoView({ behavior: "smooth", block: "start" });
  }

  // --- map --------------------------------------------------------------------------------

  function projection() {
    const points = state.stations.map((s) => [s.lat, s.lon]).concat(TOWNS.map((tw) => [tw[1], tw[2]]));
    const lats = points.map((p) => p[0]);
    const lons = points.map((p) => p[1]);
    const pad = 0.012;
    const lat0 = Math.min(...lats) - pad, lat1 = Math.max(...lats) + pad;
    // More room on the right: value labels sit to the right of their station.
    const lon0 = Math.min(...lons) - pad, lon1 = Math.max(...lons) + 3 * pad;
    const k = Math.cos(((lat0 + lat1) / 2) * Math.PI / 180);
    // A small user-space width keeps labels legible when a phone scales the map down to 330 px.
    const width = 560;
    const scale = width / ((lon1 - lon0) * k);
    const height = Math.round((lat1 - lat0) * scale);
    return {
      width, height,
      x: (lon) => (lon - lon0) * k * scale,
      y: (lat) => (lat1 - lat) * scale,
    };
  }

  function colourScale(values) {
    const finite = values.filter((v) => Number.isFinite(v));
    if (!finite.length) return { min: NaN, max: NaN, colour: () => "#9aa3ad" };
    let min = Math.min(...finite), max = Math.max(...finite);
    if (max - min < 1e-9) { min -= 1; max += 1; }
    const colour = (v) => {
      if (!Number.isFinite(v)) return "#9aa3ad";
      const f = Math.max(0, Math.min(1, (v - min) / (max - min))) * (PALETTE.length - 1);
      const i = Math.min(PALETTE.length - 2, Math.floor(f));
      return mix(PALETTE[i], PALETTE[i + 1], f - i);
    };
    return { min, max, colour };
  }
  function mix(a, b, f) {
    const pa = [1, 3, 5].map((i) => parseInt(a.slice(i, i + 2), 16));
    const pb = [1, 3, 5].map((i) => parseInt(b.slice(i, i + 2), 16));
    return "#" + pa.map((v, i) => Math.round(v + (pb[i] - v) * f).toString(16).padStart(2, "0")).join("");
  }
  function currentValue(id, parameter) {
    const entry = state.latest.get(id);
    const v = entry && entry.values ? entry.values[parameter] : undefined;
    return typeof v === "number" ? v : NaN;
  }

  function renderMap() {
    const proj = projection();
    const root = svg("svg", { viewBox: "0 0 " + proj.width + " " + proj.height, role: "group", "aria-labelledby": "map-h" });
    root.append(svg("rect", { class: "land", x: 0, y: 0, width: proj.width, height: proj.height }));
    // Sea: the coastline closed along the bottom edge of the frame.
    const coast = COAST.map(([lat, lon]) => proj.x(lon).toFixed(1) + "," + proj.y(lat).toFixed(1));
    const first = COAST[0], last = COAST[COAST.length - 1];
    const sea = ["0," + proj.y(first[0]).toFixed(1)].concat(coast, [
      proj.x(last[1]).toFixed(1) + "," + proj.height, "0," + proj.height,
    ]);
    root.append(svg("polygon", { class: "sea", points: sea.join(" ") }));
    const bay = svg("text", { x: proj.x(23.5), y: Math.min(proj.height - 10, proj.y(38.018)), class: "bay" });
    bay.textContent = t("bay");
    root.append(bay);
    for (const [name, lat, lon] of TOWNS) {
      root.append(svg("circle", { class: "town-dot", cx: proj.x(lon), cy: proj.y(lat), r: 2 }));
      const label = svg("text", { class: "town", x: proj.x(lon), y: proj.y(lat) - 11, "text-anchor": "middle" });
      label.textContent = municipality(name);
      root.append(label);
    }
    const scale = colourScale(state.stations.map((s) => currentValue(s.id, state.parameter)));
    for (const s of state.stations) {
      const value = currentValue(s.id, state.parameter);
      const g = svg("g", {
        class: "station" + (s.id === state.station ? " selected" : ""), tabindex: "0", role: "button",
        "data-station": s.id, transform: "translate(" + proj.x(s.lon).toFixed(1) + "," + proj.y(s.lat).toFixed(1) + ")",
        "aria-label": stationName(s) + ": " + paramName(state.parameter) + " " + (Number.isFinite(value) ? formatValue(state.parameter, value) : t("noValue")),
      });
      const title = svg("title");
      title.textContent = stationName(s);
      g.append(title, svg("circle", { r: 8, fill: scale.colour(value) }));
      const label = svg("text", { x: 10, y: 5 });
      label.textContent = Number.isFinite(value) ? formatNumber(state.parameter, value) : "—";
      g.append(label);
      g.addEventListener("click", () => selectStation(s.id, false));
      g.addEventListener("keydown", (event) => {
        if (event.key === "Enter" || event.key === " ") { event.preventDefault(); selectStation(s.id, false); }
      });
      root.append(g);
    }
    const focused = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.station : null;
    const inMap = focused && $("map").contains(document.activeElement);
    $("map").replaceChildren(root);
    if (inMap) { const again = $("map").querySelector('[data-station="' + CSS.escape(focused) + '"]'); if (again) again.focus(); }
    renderLegend(scale);
  }

  function renderLegend(scale) {
    const legend = $("legend");
    if (!Number.isFinite(scale.min)) { legend.replaceChildren(el("span", { text: t("legendNoData") })); return; }
    const bar = el("span", { className: "bar" });
    // Low to high along the reading direction, as the labels around the bar.
    bar.style.background = "linear-gradient(" + (document.documentElement.dir === "rtl" ? "to left" : "to right") + ", " + PALETTE.join(", ") + ")";
    legend.replaceChildren(
      el("span", { text: paramName(state.parameter) + ":" }),
      bdi(formatValue(state.parameter, scale.min)), bar,
      bdi(formatValue(state.parameter, scale.max)),
      el("span", { text: "· " + t("legendNoData") }),
    );
  }

  // --- station cards ----------------------------------------------------------------------

  function cardParameters(s) {
    const entry = state.latest.get(s.id);
    const shown = new Set(s.parameters || []);
    if (entry) for (const p of Object.keys(entry.values || {})) shown.add(p);
    const order = (id) => { const i = PARAM_ORDER.indexOf(id); return i < 0 ? 99 : i; };
    return [...shown].sort((a, b) => order(a) - order(b));
  }

  function renderCard(s) {
    const entry = state.latest.get(s.id);
    const online = stationOnline(s.id);
    const button = el("button", { type: "button", "aria-label": t("showStation") + " " + stationName(s) }, [bdi(stationName(s))]);
    button.addEventListener("click", () => selectStation(s.id, true));
    const age = entry ? el("span", { className: "age", "data-ts": entry.ts, title: formatTime(entry.ts), text: t("lastReading") + ": " + formatAge(entry.ts) }) : el("span", { className: "age", text: t("noData") });
    const dl = el("dl");
    for (const p of cardParameters(s)) {
      const v = entry && entry.values ? entry.values[p] : undefined;
      dl.append(el("dt", { text: paramName(p) }), el("dd", { "data-p": p }, [bdi(formatValue(p, v))]));
    }
    return el("li", { className: "card" + (s.id === state.station ? " selected" : ""), "data-station": s.id }, [
      el("h3", {}, [button]),
      el("div", { className: "meta" }, [
        el("span", { className: "badge " + (online ? "online" : "offline"), text: online ? t("online") : t("offline") }),
        el("span", {}, [bdi(municipality(s.municipality))]),
        age,
      ]),
      dl,
    ]);
  }

  function renderCards() {
    $("stations").replaceChildren(...state.stations.map(renderCard));
  }

  function updateCard(id, changed) {
    const s = state.byId.get(id);
    const card = $("stations").querySelector('li[data-station="' + CSS.escape(id) + '"]');
    if (!s || !card) return;
    const hadFocus = card.contains(document.activeElement);
    const fresh = renderCard(s);
    card.replaceWith(fresh);
    for (const p of changed || []) {
      const dd = fresh.querySelector('dd[data-p="' + CSS.escape(p) + '"]');
      if (dd) dd.classList.add("flash");
    }
    if (hadFocus) fresh.querySelector("h3 button").focus();
  }

  function refreshAges() {
    for (const node of document.querySelectorAll(".age[data-ts]")) {
      node.textContent = t("lastReading") + ": " + formatAge(node.dataset.ts);
    }
  }

  // --- heat stress ------------------------------------------------------------------------

  function heatCategory(value) {
    if (!Number.isFinite(value)) return null;
    for (const [id, from] of HEAT_CATEGORIES) if (value >= from) return id;
    return "none";
  }
  function humidexLevel(value) {
    if (!Number.isFinite(value)) return null;
    for (const [id, from] of HUMIDEX_LEVELS) if (value >= from) return id;
    return "hx_none";
  }

  function renderHeat() {
    const legend = ["caution", "extreme_caution", "danger", "extreme_danger"].map((id) => {
      const from = HEAT_CATEGORIES.find((c) => c[0] === id)[1];
      return el("li", {}, [el("span", { className: "cat cat-" + id }, [swatch("heat_index", id), t("level.heat_index." + id) + " ≥ ", bdi(formatValue("heat_index", from))])]);
    });
    $("heat-legend").replaceChildren(...legend, el("li", { className: "note", text: t("heatNote") }));
    const rows = state.stations
      .map((s) => ({ s, hi: currentValue(s.id, "heat_index"), hx: currentValue(s.id, "humidex") }))
      .filter((r) => Number.isFinite(r.hi) || Number.isFinite(r.hx))
      .sort((a, b) => (Number.isFinite(b.hi) ? b.hi : -99) - (Number.isFinite(a.hi) ? a.hi : -99));
    $("heat").replaceChildren(...rows.map(({ s, hi, hx }) => {
      const cat = heatCategory(hi);
      const level = humidexLevel(hx);
      return el("li", { "data-heat": s.id }, [
        el("span", {}, [bdi(stationName(s))]),
        el("span", { className: "vals" }, [
          el("span", {}, [t("heatIndex") + " ", bdi(formatValue("heat_index", hi)), " "]),
          cat ? el("span", { className: "cat cat-" + cat }, [swatch("heat_index", cat), t("level.heat_index." + cat)]) : null,
        ]),
        el("span", { className: "note" }, [t("humidexLabel") + " ", bdi(formatValue("humidex", hx)), level ? " — " + t(level) : ""]),
      ]);
    }));
    if (!rows.length) $("heat").replaceChildren(el("li", { className: "note", text: t("noData") }));
  }

  // --- plain-language levels --------------------------------------------------------------

  function discomfortClass(temperature, humidity) {
    if (!Number.isFinite(temperature) || !Number.isFinite(humidity)) return null;
    const di = temperature - 0.55 * (1 - 0.01 * humidity) * (temperature - 14.5); // Thom, °C and %
    for (const [from, id] of DI_LOWER_BOUNDS) if (di >= from) return id;
    return "no_discomfort";
  }
  function airLevel(id) {
    let worst = -1;
    for (const [pollutant, edges] of Object.entries(EAQI_UPPER_EDGES)) {
      const v = currentValue(id, pollutant);
      if (!Number.isFinite(v)) continue;
      let index = edges.findIndex((upper) => v <= upper);
      if (index < 0) index = edges.length;
      worst = Math.max(worst, index);
    }
    return worst < 0 ? null : EAQI_LEVELS[worst];
  }
  // A level's colour sample with a pattern that grows denser with the level: colour is never
  // the only carrier (the name and "level n of N" are written next to it).
  function swatch(scale, level) {
    const spec = SCALES.find((sc) => sc.id === scale);
    const rank = spec ? spec.levels.indexOf(level) : 0;
    const steps = spec ? spec.levels.length : 6;
    const tone = Math.round((rank * 5) / (steps - 1));
    return el("span", { className: "swatch tone-" + tone + " pat-" + tone, "aria-hidden": "true" });
  }

  function renderWarnings() {
    const sections = SCALES.map((scale) => {
      const counts = new Map();
      for (const s of state.stations) {
        const level = scale.level(s.id);
        if (level) counts.set(level, (counts.get(level) || 0) + 1);
      }
      const items = scale.levels.map((level, i) => {
        const count = counts.get(level) || 0;
        const key = scale.id === "heat_index" ? "level.heat_index." + level : "level." + scale.id + "." + level;
        return el("li", { className: "level" + (count ? " current" : ""), "data-level": level }, [
          el("p", { className: "level-name" }, [
            swatch(scale.id, level),
            el("strong", { text: t(key) }),
            el("span", { className: "rank", text: " (" + t("levelOf", { n: i + 1, total: scale.levels.length }) + ")" }),
            count ? el("span", { className: "now", text: " — " + tp("nowAt", count) }) : null,
          ]),
          el("p", { className: "advice", text: t("advice." + scale.id + "." + level) }),
        ]);
      });
      return el("section", { className: "scale", "data-scale": scale.id }, [
        el("h3", { text: t("scale." + scale.id) }),
        scale.note ? el("p", { className: "note", text: t(scale.note) }) : null,
        el("ol", { className: "levels" }, items),
      ]);
    });
    $("warnings").replaceChildren(...sections);
  }

  function renderSummary() {
    const reporting = state.stations.filter((s) => stationOnline(s.id)).length;
    $("summary").textContent = tp("stationsReporting", reporting, { total: state.stations.length, minutes: OFFLINE_AFTER_MS / 60000 });
  }

  // --- chart ------------------------------------------------------------------------------

  function aggFor(parameter) {
    const spec = state.params.get(parameter) || {};
    const agg = spec.agg || spec.default_agg || "mean";
    if (agg === "sum") return ["sum"];
    if (parameter === "wind_direction") return ["mean"];
    return ["mean", "min", "max"];
  }

  function seriesUrl(format) {
    const range = RANGES[state.range];
    const end = new Date();
    const start = new Date(end.getTime() - range.hours * 3600000);
    const iso = (d) => d.toISOString().replace(/\.\d{3}Z$/, "Z");
    const params = new URLSearchParams({
      parameters: state.parameter, start: iso(start), end: iso(end), interval: range.interval,
      agg: aggFor(state.parameter).join(","),
    });
    if (format) params.set("format", format);
    return "/v1/stations/" + encodeURIComponent(state.station) + "/series?" + params.toString();
  }

  function monthNames(style) {
    const f = new Intl.DateTimeFormat(locale(), { month: style, timeZone: "UTC" });
    return Array.from({ length: 12 }, (_, m) => f.format(new Date(Date.UTC(2021, m, 15))));
  }
  function dayNames(style) {
    const f = new Intl.DateTimeFormat(locale(), { weekday: style, timeZone: "UTC" });
    return Array.from({ length: 7 }, (_, d) => f.format(new Date(Date.UTC(2021, 0, 3 + d))));
  }

  function axisLabels(splits) {
    const short = state.range === "24h";
    const f = new Intl.DateTimeFormat(locale(), short
      ? { timeZone: TZ, hour: "2-digit", minute: "2-digit", hourCycle: "h23" }
      : { timeZone: TZ, day: "numeric", month: "short" });
    return splits.map((ts) => f.format(new Date(ts * 1000)));
  }

  async function loadChart() {
    if (!state.station || typeof uPlot === "undefined") return;
    const token = ++state.chartToken;
    const s = state.byId.get(state.station);
    $("chart-title").textContent = stationName(s) + " — " + paramName(state.parameter);
    $("download").href = seriesUrl("csv");
    $("download").setAttribute("download", state.station + "_" + state.parameter + "_" + state.range + ".csv");
    $("chart-msg").textContent = t("loading");
    $("chart").dataset.points = "0";
    $("chart").setAttribute("aria-busy", "true");
    const aggs = aggFor(state.parameter);
    let body;
    try {
      body = await getJSON(seriesUrl(null));
    } catch (error) {
      if (token !== state.chartToken) return;
      $("chart-msg").textContent = t("chartError");
      drawChart([[], []], aggs);
      return;
    }
    if (token !== state.chartToken) return;
    const xs = [], cols = aggs.map(() => []);
    for (const point of body.points || []) {
      const cell = (point.values || {})[state.parameter];
      if (cell === undefined || cell === null) continue;
      xs.push(Date.parse(point.time) / 1000);
      aggs.forEach((agg, i) => {
        const v = typeof cell === "number" ? cell : cell[agg];
        cols[i].push(typeof v === "number" ? v : null);
      });
    }
    $("chart-msg").textContent = xs.length ? "" : t("chartEmpty");
    drawChart([xs, ...cols], aggs);
  }

  function drawChart(data, aggs) {
    const box = $("chart");
    if (state.chart) { state.chart.destroy(); state.chart = null; }
    const width = Math.max(240, box.clientWidth);
    const height = width < 500 ? 220 : 300;
    const p = state.parameter;
    const names = { MMMM: monthNames("long"), MMM: monthNames("short"), WWWW: dayNames("long"), WWW: dayNames("short") };
    const timeFmt = (u, ts) => (ts == null ? "—" : formatTime(ts * 1000));
    const valueFmt = (u, v) => (v == null ? "—" : formatValue(p, v));
    const series = [{ label: t("time"), value: timeFmt }];
    const colour = "#0b5cad";
    aggs.forEach((agg) => {
      const main = agg === "mean" || agg === "sum";
      series.push({
        label: t(agg), value: valueFmt, stroke: main ? colour : "rgba(11,92,173,0.45)",
        width: main ? 2 : 1, points: { show: data[0].length < 60 },
      });
    });
    const bands = aggs.length === 3 ? [{ series: [3, 2], fill: "rgba(11,92,173,0.15)" }] : [];
    const opts = {
      width, height, bands, series,
      tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), TZ),
      fmtDate: (tpl) => uPlot.fmtDate(tpl, names),
      scales: { x: { time: true } },
      axes: [
        { values: (u, splits) => axisLabels(splits), stroke: "#1b1f24", grid: { stroke: "#e3e7ec" } },
        { label: unitOf(p), stroke: "#1b1f24", grid: { stroke: "#e3e7ec" }, size: 56,
          values: (u, splits) => splits.map((v) => formatNumber(p, v)) },
      ],
      legend: { live: true },
      cursor: { focus: { prox: 16 } },
    };
    state.chart = new uPlot(opts, data, box);
    box.dataset.points = String(data[0].length);
    box.setAttribute("aria-busy", "false");
    box.setAttribute("aria-label", $("chart-title").textContent);
  }

  // --- live stream ------------------------------------------------------------------------

  function setLive(status) {
    const live = $("live");
    live.dataset.state = status;
    live.textContent = t("live_" + status);
  }

  function connectStream() {
    if (typeof EventSource === "undefined") return;
    const source = new EventSource("/v1/stream");
    state.source = source;
    setLive("connecting");
    source.addEventListener("open", () => setLive("open"));
    source.addEventListener("error", () => setLive(source.readyState === EventSource.CLOSED ? "closed" : "connecting"));
    source.addEventListener("reading", (event) => {
      let entry;
      try { entry = JSON.parse(event.data); } catch (e) { return; }
      if (!entry || !state.byId.has(entry.station)) return;
      if (!mergeEntry(entry)) return;
      if (!state.status.has(entry.station)) state.status.set(entry.station, "online");
      updateCard(entry.station, Object.keys(entry.values || {}));
      renderMap();
      renderHeat();
      renderWarnings();
      renderSummary();
    });
    source.addEventListener("status", (event) => {
      let status;
      try { status = JSON.parse(event.data); } catch (e) { return; }
      if (!status || !state.byId.has(status.station)) return;
      state.status.set(status.station, status.state);
      updateCard(status.station, []);
      renderSummary();
    });
    source.addEventListener("reset", () => { loadLatest().then(renderAll); });
  }

  async function loadLatest() {
    const body = await getJSON("/v1/latest");
    for (const entry of listOf(body, "stations")) mergeEntry(entry);
  }

  // --- language ---------------------------------------------------------------------------

  async function loadCatalogue(lang) {
    if (!state.catalogues.has(lang)) state.catalogues.set(lang, await getJSON("/static/i18n/" + lang + ".json"));
    return state.catalogues.get(lang);
  }

  async function applyLanguage(lang, remember) {
    const wanted = LANGS.includes(lang) ? lang : FALLBACK_LANG;
    await Promise.all([loadCatalogue(FALLBACK_LANG), loadCatalogue(wanted)]);
    state.lang = wanted;
    const root = document.documentElement;
    root.lang = state.lang;
    root.dir = catalogue(state.lang)["meta.dir"] === "rtl" ? "rtl" : "ltr";
    document.title = t("title");
    for (const node of document.querySelectorAll("[data-i18n]")) {
      const key = node.dataset.i18n;
      node.textContent = t(key);
      if (has(key)) node.removeAttribute("lang");
      else node.setAttribute("lang", FALLBACK_LANG); // the English fallback, pronounced as such
    }
    $("lang").value = state.lang;
    $("lang-en").hidden = state.lang === FALLBACK_LANG;
    if (remember) {
      try { localStorage.setItem(STORAGE_KEY, state.lang); } catch (e) { /* private mode */ }
      // A shared or reloaded address keeps the choice.
      const url = new URL(location.href);
      url.searchParams.set("lang", state.lang);
      history.replaceState(null, "", url);
    }
    setLive($("live").dataset.state || "connecting");
    renderAll();
  }

  function renderAll() {
    if (!state.stations.length) return;
    renderControls();
    renderMap();
    renderCards();
    renderHeat();
    renderWarnings();
    renderSummary();
    loadChart();
  }

  // The language of the page: ?lang=, then the visitor's stored choice, then the browser's
  // languages in order, then Greek.
  function supported(tag) {
    const lower = String(tag || "").toLowerCase();
    if (LANG_ALIASES[lower]) return LANG_ALIASES[lower];
    const base = lower.split("-")[0];
    return LANG_ALIASES[base] || (LANGS.includes(base) ? base : null);
  }
  function initialLanguage() {
    const fromUrl = supported(new URLSearchParams(location.search).get("lang"));
    if (fromUrl) return fromUrl;
    try {
      const saved = supported(localStorage.getItem(STORAGE_KEY));
      if (saved) return saved;
    } catch (e) { /* private mode */ }
    const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language];
    for (const tag of langs) { const lang = supported(tag); if (lang) return lang; }
    return DEFAULT_LANG;
  }

  async function start() {
    $("lang").addEventListener("change", (e) => { applyLanguage(e.target.value, true); });
    for (const button of document.querySelectorAll("[data-range]")) {
      button.addEventListener("click", () => { state.range = button.dataset.range; renderControls(); loadChart(); });
    }
    $("parameter").addEventListener("change", (e) => { state.parameter = e.target.value; renderMap(); loadChart(); });
    $("station").addEventListener("change", (e) => selectStation(e.target.value, false));
    await applyLanguage(initialLanguage(), false);

    const [stations, parameters] = await Promise.all([getJSON("/v1/stations"), getJSON("/v1/parameters")]);
    state.stations = listOf(stations, "stations");
    state.byId = new Map(state.stations.map((s) => [s.id, s]));
    for (const p of listOf(parameters, "parameters")) state.params.set(p.id, p);
    for (const s of state.stations) {
      if (s.status === "online" || s.status === "offline") state.status.set(s.id, s.status);
    }
    const params = availableParameters();
    if (!params.includes(state.parameter)) state.parameter = params[0] || state.parameter;
    state.station = state.stations.length ? state.stations[0].id : null;
    await loadLatest();
    connectStream();
    renderAll();
    document.body.dataset.ready = "1";

    new ResizeObserver(() => {
      if (state.chart) {
        const w = Math.max(240, $("chart").clientWidth);
        if (Math.abs(w - state.chart.width) > 2) state.chart.setSize({ width: w, height: w < 500 ? 220 : 300 });
      }
    }).observe($("chart"));
    setInterval(refreshAges, AGE_REFRESH_MS);
    setInterval(loadChart, CHART_REFRESH_MS);
  }

  document.addEventListener("DOMContentLoaded", () => {
    start().catch((error) => {
      document.body.dataset.ready = "error";
      $("chart-msg").textContent = t("chartError") + " (" + error.message + ")";
    });
  });
})();
