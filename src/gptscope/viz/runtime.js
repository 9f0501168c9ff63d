/* gptscope runtime: error recording, draw bookkeeping, tooltips, shared colour scales.
   Loaded once per page; later copies (several notebook cells) see window.gscope and stop. */
(function () {
  "use strict";
  if (window.gscope) return;
  var gs = (window.gscope = { renderers: {}, errors: [], scales: /*GS_SCALES*/null });

  function errorBox() {
    var box = document.getElementById("gs-errors");
    if (!box && document.body) {
      box = document.createElement("pre");
      box.id = "gs-errors";
      box.hidden = true;
      document.body.appendChild(box);
    }
    return box;
  }

  gs.recordError = function (msg) {
    gs.errors.push(String(msg));
    var box = errorBox();
    if (box) box.textContent += String(msg) + "\n";
  };

  // Any uncaught error on the page (ours or not) is written down for tests to find.
  window.addEventListener("error", function (ev) {
    gs.recordError("error: " + ev.message + " (" + (ev.filename || "inline") + ":" + ev.lineno + ")");
  });
  window.addEventListener("unhandledrejection", function (ev) {
    gs.recordError("unhandled rejection: " + ev.reason);
  });

  gs.draw = function (id) {
    var root = document.getElementById(id);
    try {
      if (!root) throw new Error("no element with id " + id);
      var kind = root.getAttribute("data-gs-kind");
      var render = gs.renderers[kind];
      if (!render) throw new Error("no renderer for kind " + kind);
      var dataEl = document.getElementById(id + "-data");
      render(root, dataEl ? JSON.parse(dataEl.textContent) : null);
      var body = document.body;
      body.dataset.gsRendered = String((parseInt(body.dataset.gsRendered, 10) || 0) + 1);
    } catch (e) {
      gs.recordError(id + ": " + ((e && e.stack) || e));
      if (root) {
        var msg = document.createElement("div");
        msg.className = "gs-error";
        msg.textContent = "Could not draw this visual: " + e;
        root.appendChild(msg);
      }
    }
  };

  // ---- colours (same stops as gptscope/viz/colors.py) ----
  function hexToRgb(h) {
    return [parseInt(h.slice(1, 3), 16), parseInt(h.slice(3, 5), 16), parseInt(h.slice(5, 7), 16)];
  }
  function interp(stops, t) {
    t = Math.min(Math.max(t, 0), 1) * (stops.length - 1);
    var i = Math.min(Math.floor(t), stops.length - 2), f = t - i;
    var a = hexToRgb(stops[i]), b = hexToRgb(stops[i + 1]);
    return [0, 1, 2].map(function (k) { return Math.round(a[k] + (b[k] - a[k]) * f); });
  }
  gs.rgb = function (v, vmin, vmax, diverging) {
    if (v === null || v === undefined || isNaN(v)) return hexToRgb(gs.scales.nan);
    if (diverging) {
      var m = Math.max(Math.abs(vmin), Math.abs(vmax)) || 1;
      return interp(gs.scales.div, 0.5 + 0.5 * v / m);
    }
    return interp(gs.scales.seq, (v - vmin) / ((vmax - vmin) || 1));
  };
  gs.color = function (v, vmin, vmax, diverging) {
    return "rgb(" + gs.rgb(v, vmin, vmax, diverging).join(",") + ")";
  };
  gs.textColor = function (css) {
    var m = css.match(/\d+/g) || [255, 255, 255];
    var lum = (0.299 * m[0] + 0.587 * m[1] + 0.114 * m[2]) / 255;
    return lum > 0.55 ? "#111" : "#fff";
  };
  gs.fmt = function (v) {
    if (v === null || v === undefined || isNaN(v)) return "nan";
    if (v === 0) return "0";
    var a = Math.abs(v);
    if (a >= 1e5 || a < 1e-3) return Number(v.toPrecision(3)).toExponential(); // 1.5e-5
    if (a >= 100) return v.toFixed(0);
    return String(Number(v.toPrecision(3)));
  };
  gs.el = function (tag, cls, text) {
    var e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text; // textContent: tokens are never parsed as HTML
    return e;
  };

  // ---- one shared tooltip for every element with data-tip ----
  var tip = null;
  function tipEl() {
    if (!tip) {
      tip = gs.el("div", "gs-tip");
      tip.style.display = "none";
      document.body.appendChild(tip);
    }
    return tip;
  }
  gs.showTip = function (text, x, y) {
    var t = tipEl();
    t.textContent = text;
    t.style.display = "block";
    var w = t.offsetWidth, h = t.offsetHeight;
    var left = x + 14, top = y + 14;
    if (left + w > window.innerWidth - 4) left = x - w - 10;
    if (top + h > window.innerHeight - 4) top = y - h - 10;
    t.style.left = left + "px";
    t.style.top = top + "px";
  };
  gs.hideTip = function () { if (tip) tip.style.display = "none"; };
  document.addEventListener("mousemove", function (ev) {
    var target = ev.target && ev.target.closest ? ev.target.closest("[data-tip]") : null;
    if (target) gs.showTip(target.getAttribute("data-tip"), ev.clientX, ev.clientY);
    else if (!(ev.target && ev.target.closest && ev.target.closest("[data-gs-owntip]"))) gs.hideTip();
  });

  // Server-drawn visuals (SVG, tables) need nothing beyond tooltips.
  gs.renderers.static = function () {};
  gs.renderers.heatmap = gs.renderers.static;
  gs.renderers.bars = gs.renderers.static;
  gs.renderers.histogram = gs.renderers.static;
  gs.renderers.logitlens = gs.renderers.static;
  gs.renderers.scatter = gs.renderers.static;  // hover texts are SVG <title>s

  // Line charts: a vertical guide and the values of every series at the nearest x.
  gs.renderers.line = function (root, data) {
    var svg = root.querySelector("svg");
    var guide = root.querySelector(".gs-guide");
    if (!svg || !data) return;
    var box = svg.viewBox.baseVal;
    svg.addEventListener("mousemove", function (ev) {
      var r = svg.getBoundingClientRect();
      var px = box.x + (ev.clientX - r.left) * (box.width / r.width);
      if (px < data.x0 || px > data.x1) { guide.style.display = "none"; gs.hideTip(); return; }
      var lines = [], best = null;
      data.series.forEach(function (s) {
        var bi = -1, bd = Infinity;
        for (var i = 0; i < s.px.length; i++) {
          var d = Math.abs(s.px[i] - px);
          if (d < bd) { bd = d; bi = i; }
        }
        if (bi >= 0) {
          if (best === null || bd < best.d) best = { d: bd, px: s.px[bi] };
          lines.push(s.name + ": " + gs.fmt(s.y[bi]) + "  (" + data.xLabel + " " + gs.fmt(s.x[bi]) + ")");
        }
      });
      if (best) {
        guide.setAttribute("x1", best.px);
        guide.setAttribute("x2", best.px);
        guide.style.display = "";
      }
      gs.showTip(lines.join("\n"), ev.clientX, ev.clientY);
    });
    svg.addEventListener("mouseleave", function () { guide.style.display = "none"; gs.hideTip(); });
  };
})();
