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

  const TEXT = {
    en: {
      title: "Meltemi — Thriasio plain, live",
      subtitle: "Microclimate stations in Elefsina, Aspropyrgos, Magoula, Mandra, Fyli and Ano Liosia",
      skip: "Skip to content", controls: "Choices", parameter: "Parameter", station: "Station",
      range: "Period", r24h: "24 h", r7d: "7 days", r30d: "30 days",
      map: "Map of the plain",
      mapNote: "Schematic: stations placed by latitude and longitude; approximate coastline.",
      chart: "History", download: "Download the data on screen (CSV)",
      heat: "Heat stress", stations: "Stations now",
      footer: "Open data from the Meltemi network. Times in Greek time (Europe/Athens).", api: "API",
      live_open: "Live", live_connecting: "Connecting…", live_closed: "Disconnected, retrying…",
      online: "online", offline: "offline", noData: "no data yet", lastReading: "last reading",
      loading: "Loading…", chartEmpty: "No data for this period.",
      chartError: "Could not load the history.", mean: "mean", min: "min", max: "max",
      sum: "total", time: "Time", noValue: "no data", bay: "Bay of Elefsina",
      showStation: "Show the history of", heatIndex: "Heat index", humidexLabel: "Humidex",
      cat_none: "Below caution", cat_caution: "Caution", cat_extreme_caution: "Extreme caution",
      cat_danger: "Danger", cat_extreme_danger: "Extreme danger",
      hx_none: "little or no discomfort", hx_some: "some discomfort",
      hx_great: "great discomfort", hx_danger: "dangerous",
      heatNote: "Categories: US NWS heat index. Humidex comfort: Environment Canada.",
      legendNoData: "grey: no data",
    },
    el: {
      title: "Μελτέμι — Θριάσιο Πεδίο, ζωντανά",
      subtitle: "Μικροκλιματικοί σταθμοί σε Ελευσίνα, Ασπρόπυργο, Μαγούλα, Μάνδρα, Φυλή και Άνω Λιόσια",
      skip: "Μετάβαση στο περιεχόμενο", controls: "Επιλογές", parameter: "Μέγεθος", station: "Σταθμός",
      range: "Περίοδος", r24h: "24 ώρες", r7d: "7 ημέρες", r30d: "30 ημέρες",
      map: "Χάρτης του πεδίου",
      mapNote: "Σχηματικός χάρτης: οι σταθμοί τοποθετούνται κατά γεωγραφικό πλάτος και μήκος· η ακτογραμμή είναι κατά προσέγγιση.",
      chart: "Ιστορικό", download: "Λήψη των δεδομένων της οθόνης (CSV)",
      heat: "Θερμική καταπόνηση", stations: "Οι σταθμοί τώρα",
      footer: "Ανοιχτά δεδομένα του δικτύου Μελτέμι. Ώρα Ελλάδας (Ευρώπη/Αθήνα).", api: "API",
      live_open: "Ζωντανά", live_connecting: "Σύνδεση…", live_closed: "Αποσυνδέθηκε, νέα προσπάθεια…",
      online: "σε λειτουργία", offline: "εκτός λειτουργίας", noData: "χωρίς δεδομένα ακόμη",
      lastReading: "τελευταία μέτρηση", loading: "Φόρτωση…",
      chartEmpty: "Δεν υπάρχουν δεδομένα για αυτή την περίοδο.",
      chartError: "Δεν ήταν δυνατή η φόρτωση του ιστορικού.", mean: "μέση τιμή", min: "ελάχιστη",
      max: "μέγιστη", sum: "σύνολο", time: "Ώρα", noValue: "χωρίς δεδομένα", bay: "Κόλπος Ελευσίνας",
      showStation: "Εμφάνιση ιστορικού:", heatIndex: "Δείκτης θερμότητας", humidexLabel: "Humidex",
      cat_none: "Κάτω από «Προσοχή»", cat_caution: "Προσοχή", cat_extreme_caution: "Ιδιαίτερη προσοχή",
      cat_danger: "Κίνδυνος", cat_extreme_danger: "Άκρος κίνδυνος",
      hx_none: "ελάχιστη ή καμία δυσφορία", hx_some: "κάποια δυσφορία",
      hx_great: "μεγάλη δυσφορία", hx_danger: "επικίνδυνο",
      heatNote: "Κατηγορίες: δείκτης θερμότητας της NWS (ΗΠΑ). Humidex: Environment Canada.",
      legendNoData: "γκρι: χωρίς δεδομένα",
    },
  };
  const PARAM_NAMES = {
    en: {
      air_temperature: "Air temperature", relative_humidity: "Relative humidity",
      air_pressure: "Air pressure", wind_speed: "Wind speed", wind_gust: "Wind gust",
      wind_direction: "Wind direction", precipitation: "Precipitation",
      solar_radiation: "Solar radiation", uv_index: "UV index", pm1: "PM1", pm2_5: "PM2.5",
      pm10: "PM10", dew_point: "Dew point", heat_index: "Heat index", humidex: "Humidex",
      apparent_temperature: "Apparent temperature",
    },
    el: {
      air_temperature: "Θερμοκρασία αέρα", relative_humidity: "Σχετική υγρασία",
      air_pressure: "Ατμοσφαιρική πίεση", wind_speed: "Ταχύτητα ανέμου", wind_gust: "Ριπή ανέμου",
      wind_direction: "Διεύθυνση ανέμου", precipitation: "Υετός",
      solar_radiation: "Ηλιακή ακτινοβολία", uv_index: "Δείκτης UV", pm1: "ΑΣ1", pm2_5: "ΑΣ2,5",
      pm10: "ΑΣ10", dew_point: "Σημείο δρόσου", heat_index: "Δείκτης θερμότητας",
      humidex: "Humidex", apparent_temperature: "Αισθητή θερμοκρασία",
    },
  };
  const UNITS = {
    en: { "1": "", "°": "°", mm: "mm", "m/s": "m/s", hPa: "hPa" },
    el: { "1": "", "°": "°", mm: "χιλ.", "m/s": "μ/δ", hPa: "hPa" },
  };
  const COMPASS = {
    en: ["N", "NE", "E", "SE", "S", "SW", "W", "NW"],
    el: ["Β", "ΒΑ", "Α", "ΝΑ", "Ν", "ΝΔ", "Δ", "ΒΔ"],
  };
  // Greek for the place and site names of the registry ("Place, Site"); unknown parts stay as
  // the registry writes them.
  const PLACES = {
    el: {
      Elefsina: "Ελευσίνα", Aspropyrgos: "Ασπρόπυργος", Magoula: "Μαγούλα", Mandra: "Μάνδρα",
      "Mandra-Eidyllia": "Μάνδρα-Ειδυλλία", Fyli: "Φυλή", "Ano Liosia": "Άνω Λιόσια", Zefyri: "Ζεφύρι",
      "Town Hall": "Δημαρχείο", Seafront: "Παραλία", "Western Industrial Zone": "Δυτική Βιομηχανική Ζώνη",
      "Town Centre": "Κέντρο", "Refinery Fence Line": "Όριο διυλιστηρίου",
      "Lake Koumoundourou": "Λίμνη Κουμουνδούρου", "Thriasio Freight Centre": "Εμπορευματικό Κέντρο Θριασίου",
      "Primary School": "Δημοτικό Σχολείο", "Pateras Foothills": "Πρόποδες Πατέρα", Chasia: "Χασιά",
      "Sports Centre": "Αθλητικό Κέντρο",
    },
  };
  // Viridis, sampled: perceptually uniform and readable for colour-blind visitors.
  const PALETTE = ["#440154", "#414487", "#2a788e", "#22a884", "#7ad151", "#fde725"];

  const state = {
    lang: "en",
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
  const t = (key) => (TEXT[state.lang] && TEXT[state.lang][key]) || TEXT.en[key] || key;
  const locale = () => (state.lang === "el" ? "el-GR" : "en-GB");

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
  function svg(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }

  // --- formatting -------------------------------------------------------------------------

  function paramName(id) {
    return PARAM_NAMES[state.lang][id] || (state.params.get(id) || {}).name || id;
  }
  function unitOf(id) {
    const raw = (state.params.get(id) || {}).unit || "";
    const table = UNITS[state.lang];
    return Object.prototype.hasOwnProperty.call(table, raw) ? table[raw] : raw;
  }
  function formatNumber(id, value) {
    const digits = Object.prototype.hasOwnProperty.call(DIGITS, id) ? DIGITS[id] : 1;
    return new Intl.NumberFormat(locale(), { maximumFractionDigits: digits, minimumFractionDigits: digits }).format(value);
  }
  function formatValue(id, value) {
    if (value === undefined || value === null || Number.isNaN(value)) return "—";
    const unit = unitOf(id);
    let text = formatNumber(id, value) + (unit ? (unit === "°" || unit === "%" ? "" : "\u00a0") + unit : "");
    if (id === "wind_direction") text += " " + COMPASS[state.lang][Math.round(value / 45) % 8];
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
    return (PLACES[state.lang] || {})[name] || name;
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
      return el("option", { value: id, text: paramName(id) + (unit ? " (" + unit + ")" : "") });
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
    bar.style.background = "linear-gradient(to right, " + PALETTE.join(", ") + ")";
    legend.replaceChildren(
      el("span", { text: paramName(state.parameter) + ":" }),
      el("span", { text: formatValue(state.parameter, scale.min) }), bar,
      el("span", { text: formatValue(state.parameter, scale.max) }),
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
    const button = el("button", { type: "button", text: stationName(s), "aria-label": t("showStation") + " " + stationName(s) });
    button.addEventListener("click", () => selectStation(s.id, true));
    const age = entry ? el("span", { className: "age", "data-ts": entry.ts, title: formatTime(entry.ts), text: t("lastReading") + ": " + formatAge(entry.ts) }) : el("span", { className: "age", text: t("noData") });
    const dl = el("dl");
    for (const p of cardParameters(s)) {
      const v = entry && entry.values ? entry.values[p] : undefined;
      dl.append(el("dt", { text: paramName(p) }), el("dd", { "data-p": p, text: formatValue(p, v) }));
    }
    return el("li", { className: "card" + (s.id === state.station ? " selected" : ""), "data-station": s.id }, [
      el("h3", {}, [button]),
      el("div", { className: "meta" }, [
        el("span", { className: "badge " + (online ? "online" : "offline"), text: online ? t("online") : t("offline") }),
        el("span", { text: municipality(s.municipality) }),
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
      return el("li", {}, [el("span", { className: "cat cat-" + id, text: t("cat_" + id) + " ≥ " + formatValue("heat_index", from) })]);
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
        el("span", { text: stationName(s) }),
        el("span", { className: "vals" }, [
          el("span", { text: t("heatIndex") + " " + formatValue("heat_index", hi) + " " }),
          cat ? el("span", { className: "cat cat-" + cat, text: t("cat_" + cat) }) : null,
        ]),
        el("span", { className: "note", text: t("humidexLabel") + " " + formatValue("humidex", hx) + (level ? " — " + t(level) : "") }),
      ]);
    }));
    if (!rows.length) $("heat").replaceChildren(el("li", { className: "note", text: t("noData") }));
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
    });
    source.addEventListener("status", (event) => {
      let status;
      try { status = JSON.parse(event.data); } catch (e) { return; }
      if (!status || !state.byId.has(status.station)) return;
      state.status.set(status.station, status.state);
      updateCard(status.station, []);
    });
    source.addEventListener("reset", () => { loadLatest().then(renderAll); });
  }

  async function loadLatest() {
    const body = await getJSON("/v1/latest");
    for (const entry of listOf(body, "stations")) mergeEntry(entry);
  }

  // --- language ---------------------------------------------------------------------------

  function applyLanguage(lang) {
    state.lang = TEXT[lang] ? lang : "en";
    document.documentElement.lang = state.lang;
    document.title = t("title");
    for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
    for (const button of document.querySelectorAll("[data-lang]")) {
      button.setAttribute("aria-pressed", String(button.dataset.lang === state.lang));
    }
    try { localStorage.setItem("meltemi.lang", state.lang); } catch (e) { /* private mode */ }
    setLive($("live").dataset.state || "connecting");
    renderAll();
  }

  function renderAll() {
    if (!state.stations.length) return;
    renderControls();
    renderMap();
    renderCards();
    renderHeat();
    loadChart();
  }

  function initialLanguage() {
    try {
      const saved = localStorage.getItem("meltemi.lang");
      if (saved && TEXT[saved]) return saved;
    } catch (e) { /* private mode */ }
    const langs = navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language || "en"];
    return langs.some((l) => String(l).toLowerCase().startsWith("el")) ? "el" : "en";
  }

  async function start() {
    for (const button of document.querySelectorAll("[data-lang]")) {
      button.addEventListener("click", () => applyLanguage(button.dataset.lang));
    }
    for (const button of document.querySelectorAll("[data-range]")) {
      button.addEventListener("click", () => { state.range = button.dataset.range; renderControls(); loadChart(); });
    }
    $("parameter").addEventListener("change", (e) => { state.parameter = e.target.value; renderMap(); loadChart(); });
    $("station").addEventListener("change", (e) => selectStation(e.target.value, false));
    applyLanguage(initialLanguage());

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
