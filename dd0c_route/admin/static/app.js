// dd0c-route dashboard: plain JS, no dependencies, nothing fetched but this listener.
// Every value from the server is rendered with textContent (never innerHTML).
"use strict";
(function () {
  var csrf = null;
  var reqOffset = 0;
  var PAGES = ["overview", "spend", "keys", "requests", "routing"];
  var COLORS = ["#0b57d0", "#d93025", "#188038", "#f29900", "#a142f4", "#12b5cb", "#e52592", "#5f6368"];
  var SVGNS = "http://www.w3.org/2000/svg";

  function $(id) { return document.getElementById(id); }
  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    if (cls) node.className = cls;
    return node;
  }
  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVGNS, tag);
    Object.keys(attrs).forEach(function (k) { node.setAttribute(k, attrs[k]); });
    if (text !== undefined) node.textContent = String(text);
    return node;
  }
  function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
  function row(cells) {
    var tr = el("tr");
    cells.forEach(function (c) { if (c instanceof Node) { var td = el("td"); td.appendChild(c); tr.appendChild(td); } else tr.appendChild(el("td", c)); });
    return tr;
  }
  function fill(tbody, rows) { clear(tbody); rows.forEach(function (r) { tbody.appendChild(row(r)); }); }
  function usd(s) { return s === null || s === undefined ? "-" : "$" + Number(s).toFixed(4); }
  function ms(v) { return v === null || v === undefined ? "-" : Math.round(v) + " ms"; }
  function when(t) { return t ? new Date(t * 1000).toISOString().replace("T", " ").slice(0, 19) : "-"; }
  function pct(n, d) { return d ? (100 * n / d).toFixed(1) + "%" : "0%"; }

  function api(path, opts) {
    opts = opts || {};
    var headers = { "Accept": "application/json" };
    if (opts.body !== undefined) headers["Content-Type"] = opts.type || "application/json";
    if (opts.method && opts.method !== "GET" && csrf) headers["X-CSRF-Token"] = csrf;
    return fetch(path, { method: opts.method || "GET", headers: headers, credentials: "same-origin",
                         body: opts.body === undefined ? undefined : (typeof opts.body === "string" ? opts.body : JSON.stringify(opts.body)) })
      .then(function (r) {
        return r.json().catch(function () { return {}; }).then(function (data) {
          if (!r.ok) { var e = new Error((data.error && data.error.message) || ("HTTP " + r.status)); e.status = r.status; throw e; }
          return data;
        });
      });
  }
  function failed(target) {
    return function (e) { if (e.status === 401) return showLogin(); if (target) $(target).textContent = e.message; };
  }

  function showLogin() {
    csrf = null;
    $("nav").hidden = true;
    PAGES.forEach(function (p) { $(p).hidden = true; });
    $("login").hidden = false;
    $("login-key").focus();
  }
  function showApp() {
    $("login").hidden = true;
    $("nav").hidden = false;
    route();
  }
  function route() {
    if (!csrf) return;
    var page = (location.hash || "#overview").slice(1);
    if (PAGES.indexOf(page) < 0) page = "overview";
    PAGES.forEach(function (p) { $(p).hidden = p !== page; });
    Array.prototype.forEach.call(document.querySelectorAll("nav a"), function (a) {
      if (a.getAttribute("href") === "#" + page) a.setAttribute("aria-current", "page"); else a.removeAttribute("aria-current");
    });
    ({ overview: loadOverview, spend: loadSpend, keys: loadKeys, requests: loadRequests, routing: loadRouting })[page]();
    var heading = $(page + "-title");
    if (heading) { heading.tabIndex = -1; heading.focus(); }
  }

  function loadOverview() {
    api("/admin/v1/overview").then(function (o) {
      var all = o.budgets.filter(function (b) { return b.scope === "*"; })[0];
      $("ov-today").textContent = usd(o.today.cost_usd);
      $("ov-month").textContent = usd(o.month.cost_usd);
      $("ov-today-budget").textContent = all && all.daily_usd ? "per-key daily budget " + usd(all.daily_usd) : o.budgets.length + " budget(s) configured";
      $("ov-month-budget").textContent = all && all.monthly_usd ? "per-key monthly budget " + usd(all.monthly_usd) : "";
      $("ov-savings").textContent = usd(o.month.savings_usd);
      $("ov-shadow").textContent = "shadow rules would save " + usd(o.month.shadow_savings_usd);
      $("ov-requests").textContent = String(o.month.requests);
      $("ov-rates").textContent = "errors " + pct(o.month.errors, o.month.requests) + ", disconnects " + pct(o.month.disconnects, o.month.requests);
      $("ov-latency").textContent = "p50 " + ms(o.month.latency_p50_ms) + " / p95 " + ms(o.month.latency_p95_ms);
      fill($("ov-budgets"), o.budgets.map(function (b) { return [b.scope, b.daily_usd || "-", b.monthly_usd || "-"]; }));
    }, failed());
    api("/admin/v1/alerts").then(function (a) {
      fill($("ov-alerts"), a.data.map(function (x) { return [when(x.created_at), x.scope, x.period, x.threshold, usd(x.spent_usd), x.status]; }));
    }, failed());
  }

  function chart(target, groups, stepField, byField) {
    clear(target);
    var steps = [], series = {}, max = 0;
    groups.forEach(function (g) {
      var s = g[stepField], k = g[byField];
      if (steps.indexOf(s) < 0) steps.push(s);
      (series[k] = series[k] || {})[s] = Number(g.cost_usd);
    });
    steps.sort();
    var names = Object.keys(series).slice(0, COLORS.length);
    var totals = steps.map(function (s) { return names.reduce(function (t, n) { return t + (series[n][s] || 0); }, 0); });
    max = Math.max.apply(null, totals.concat([0]));
    var W = 800, H = 260, L = 60, B = 30, T = 10;
    var root = svg("svg", { viewBox: "0 0 " + W + " " + H, "aria-hidden": "true" });
    root.appendChild(svg("line", { x1: L, y1: H - B, x2: W, y2: H - B, stroke: "#d0d7de" }));
    root.appendChild(svg("text", { x: 4, y: T + 10 }, "$" + max.toFixed(2)));
    root.appendChild(svg("text", { x: 4, y: H - B }, "$0"));
    var bw = steps.length ? (W - L) / steps.length : 0;
    steps.forEach(function (s, i) {
      var y = H - B;
      names.forEach(function (n, j) {
        var v = series[n][s] || 0, h = max ? (H - B - T) * v / max : 0;
        y -= h;
        var rect = svg("rect", { x: L + i * bw + 2, y: y, width: Math.max(1, bw - 4), height: h, fill: COLORS[j] });
        rect.appendChild(svg("title", {}, n + " " + s + ": $" + v.toFixed(6)));
        root.appendChild(rect);
      });
      if (steps.length <= 12 || i % Math.ceil(steps.length / 12) === 0) root.appendChild(svg("text", { x: L + i * bw + 2, y: H - 10 }, s.slice(5)));
    });
    target.appendChild(root);
    var legend = el("div", null, "legend");
    names.forEach(function (n, j) { var item = el("span"); var sw = el("span", null, "swatch"); sw.style.background = COLORS[j]; item.appendChild(sw); item.appendChild(document.createTextNode(n)); legend.appendChild(item); });
    target.appendChild(legend);
  }

  function loadSpend() {
    var by = $("spend-by").value, step = $("spend-step").value;
    var field = { key: "key_id" }[by] || by;
    var from = step === "hour" ? new Date(Date.now() - 2 * 86400000).toISOString() : "";
    api("/admin/v1/usage/summary?group_by=" + step + "," + by + (from ? "&from=" + encodeURIComponent(from) : "")).then(function (s) {
      chart($("spend-chart"), s.groups, step, field);
    }, failed());
    api("/admin/v1/usage/summary?group_by=" + by).then(function (s) {
      fill($("spend-table"), s.groups.map(function (g) { return [g[field], g.requests, usd(g.cost_usd), usd(g.savings_usd), ms(g.latency_p50_ms), ms(g.latency_p95_ms)]; }));
    }, failed());
  }

  function loadKeys() {
    api("/admin/v1/keys").then(function (k) {
      fill($("keys-table"), k.data.map(function (info) {
        var action = "";
        if (info.active) {
          action = el("button", "Revoke");
          action.type = "button";
          action.setAttribute("aria-label", "Revoke key " + info.name);
          action.addEventListener("click", function () {
            api("/admin/v1/keys/" + encodeURIComponent(info.key_id) + "/revoke", { method: "POST", body: {} }).then(loadKeys, failed("key-error"));
          });
        }
        return [info.name, info.key_id, info.team || "-", info.daily_usd || "-", info.monthly_usd || "-",
                info.requests_per_minute === null ? "-" : String(info.requests_per_minute),
                info.tokens_per_minute === null ? "-" : String(info.tokens_per_minute),
                info.active ? (info.admin ? "active (admin)" : "active") : "revoked " + when(info.revoked_at), action];
      }));
    }, failed("key-error"));
  }

  function loadRequests() {
    var q = ["limit=50", "offset=" + reqOffset];
    [["model", "req-model"], ["key_id", "req-key"], ["status", "req-status"], ["route", "req-route"], ["disconnected", "req-disc"]].forEach(function (p) {
      var v = $(p[1]).value.trim(); if (v) q.push(p[0] + "=" + encodeURIComponent(v));
    });
    api("/admin/v1/requests?" + q.join("&")).then(function (r) {
      fill($("req-table"), r.data.map(function (x) {
        return [when(x.created_at), x.key_id || "-", x.model_requested || "-", x.model || "-", x.status + (x.disconnected ? " (left)" : ""),
                (x.prompt_tokens || 0) + "/" + (x.completion_tokens || 0), usd(x.cost_usd), Math.round(x.latency_ms), x.route_rule || "-"];
      }));
      $("req-next").disabled = r.next_offset === null;
      $("req-prev").disabled = reqOffset === 0;
    }, failed());
  }

  function loadRouting() {
    api("/admin/v1/routing").then(function (r) {
      $("rt-mode").textContent = r.mode;
      fill($("rt-rules"), r.rules.map(function (x) { return [x.name, JSON.stringify(x.match), x.model || "(keep)", x.fallbacks.join(", ") || "-"]; }));
      fill($("rt-hits"), r.hits.map(function (h) { return [h.route, h.requests, usd(h.savings_usd), usd(h.shadow_savings_usd)]; }));
    }, failed());
  }

  function whatif(ev) {
    ev.preventDefault();
    $("whatif-error").textContent = "";
    var top = [], f = $("whatif-from").value, t = $("whatif-to").value;
    if (f) top.push('from = "' + f + 'T00:00:00Z"');
    if (t) top.push('to = "' + t + 'T00:00:00Z"');
    var body = top.join("\n") + "\n" + $("whatif-toml").value;
    api("/admin/v1/whatif", { method: "POST", body: body, type: "application/toml" }).then(function (w) {
      fill($("whatif-table"), w.rules.map(function (x) { return [x.name, x.moved, usd(x.savings_usd)]; }));
      $("whatif-total").textContent = w.total_savings_usd;
      $("whatif-unjudged").textContent = String(w.unjudged);
    }, failed("whatif-error"));
  }

  function createKey(ev) {
    ev.preventDefault();
    $("key-error").textContent = "";
    var body = { name: $("key-name").value.trim() };
    if ($("key-team").value.trim()) body.team = $("key-team").value.trim();
    if ($("key-daily").value.trim()) body.daily_usd = $("key-daily").value.trim();
    if ($("key-monthly").value.trim()) body.monthly_usd = $("key-monthly").value.trim();
    if ($("key-rpm").value.trim()) body.requests_per_minute = Number($("key-rpm").value.trim());
    if ($("key-tpm").value.trim()) body.tokens_per_minute = Number($("key-tpm").value.trim());
    api("/admin/v1/keys", { method: "POST", body: body }).then(function (k) {
      $("key-secret").textContent = k.key;
      $("key-created").hidden = false;
      $("key-form").reset();
      loadKeys();
    }, failed("key-error"));
  }

  function login(ev) {
    ev.preventDefault();
    $("login-error").textContent = "";
    api("/admin/login", { method: "POST", body: { key: $("login-key").value } }).then(function (s) {
      csrf = s.csrf_token;
      $("login-key").value = "";
      showApp();
    }, function (e) { $("login-error").textContent = e.message; });
  }

  document.addEventListener("DOMContentLoaded", function () {
    $("login-form").addEventListener("submit", login);
    $("key-form").addEventListener("submit", createKey);
    $("whatif-form").addEventListener("submit", whatif);
    $("spend-form").addEventListener("submit", function (ev) { ev.preventDefault(); loadSpend(); });
    $("req-form").addEventListener("submit", function (ev) { ev.preventDefault(); reqOffset = 0; loadRequests(); });
    $("req-next").addEventListener("click", function () { reqOffset += 50; loadRequests(); });
    $("req-prev").addEventListener("click", function () { reqOffset = Math.max(0, reqOffset - 50); loadRequests(); });
    $("logout").addEventListener("click", function () {
      api("/admin/logout", { method: "POST", body: {} }).then(showLogin, showLogin);
    });
    window.addEventListener("hashchange", route);
    api("/admin/session").then(function (s) { csrf = s.csrf_token; showApp(); }, showLogin);
  });
})();
