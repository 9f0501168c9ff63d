/* Attention patterns: a grid of per-head thumbnails, one enlarged head, and a token strip where
   hovering (or clicking, to pin) a query token colours every key token by its attention. */
(function () {
  "use strict";
  var gs = window.gscope;
  if (!gs || gs.renderers.attention) return;

  // One pixel per (query, key), scaled up by CSS: fast even for long contexts and many heads.
  function matrixCanvas(mat, vmin, vmax, div) {
    var n = mat.length, m = mat[0].length;
    var c = document.createElement("canvas");
    c.width = m;
    c.height = n;
    var ctx = c.getContext("2d"), img = ctx.createImageData(m, n);
    for (var q = 0; q < n; q++) {
      for (var k = 0; k < m; k++) {
        var rgb = gs.rgb(mat[q][k], vmin, vmax, div), o = 4 * (q * m + k);
        img.data[o] = rgb[0];
        img.data[o + 1] = rgb[1];
        img.data[o + 2] = rgb[2];
        img.data[o + 3] = 255;
      }
    }
    ctx.putImageData(img, 0, 0);
    c.className = "gs-pixels";
    return c;
  }

  var BIG = 48; // above this many tokens the enlarged head is a canvas, not a grid of cells

  gs.renderers.attention = function (root, d) {
    var T = d.tokens.length, H = d.heads.length, vmin = d.vmin, vmax = d.vmax, div = d.diverging;
    var wrap = gs.el("div", "gs-attn");
    var thumbs = gs.el("div", "gs-attn-thumbs");
    var main = gs.el("div", "gs-attn-main");
    wrap.appendChild(thumbs);
    wrap.appendChild(main);
    root.appendChild(wrap);

    var head = 0, pinned = -1, buttons = [];
    var thumbPx = Math.max(48, Math.min(96, Math.round(640 / Math.max(H, 1))));
    d.heads.forEach(function (name, h) {
      var b = gs.el("button", "gs-attn-thumb");
      b.type = "button";
      b.title = "Show " + name;
      var c = matrixCanvas(d.pattern[h], vmin, vmax, div);
      c.style.width = c.style.height = thumbPx + "px";
      b.appendChild(c);
      b.appendChild(gs.el("span", "gs-attn-thumb-label", name));
      b.addEventListener("click", function () { select(h); });
      thumbs.appendChild(b);
      buttons.push(b);
    });

    var heading = gs.el("div", "gs-attn-head");
    var matrix = gs.el("div", "gs-attn-matrix");
    var hint = gs.el("div", "gs-attn-hint",
      "Hover a token to colour the tokens it attends to (click to pin). " +
      "Colour relative to that token's strongest key; exact values in the tooltip.");
    var strip = gs.el("div", "gs-tokens gs-attn-strip");
    main.appendChild(heading);
    main.appendChild(matrix);
    main.appendChild(hint);
    main.appendChild(strip);

    var cell = Math.max(6, Math.min(26, Math.floor(420 / Math.max(T, 1))));
    var showLabels = cell >= 10;
    var spans = d.tokens.map(function (tok, i) {
      var s = gs.el("span", "gs-tok", tok);
      s.addEventListener("mouseenter", function () { if (pinned < 0) showQuery(i); });
      s.addEventListener("click", function () {
        pinned = pinned === i ? -1 : i;
        showQuery(i);
      });
      strip.appendChild(s);
      return s;
    });
    strip.addEventListener("mouseleave", function () { if (pinned < 0) showQuery(-1); });

    function showQuery(q) {
      var row = q >= 0 ? d.pattern[head][q] : null;
      var rowMax = 0;
      if (row) row.forEach(function (v) { if (v !== null && Math.abs(v) > rowMax) rowMax = Math.abs(v); });
      spans.forEach(function (s, k) {
        s.classList.toggle("gs-tok-query", k === q);
        s.classList.toggle("gs-tok-pinned", k === q && pinned === q);
        if (!row || k === q) {
          s.style.background = "";
          s.style.color = "";
          s.removeAttribute("data-tip");
          if (k === q) s.setAttribute("data-tip", "query " + q + ": " + d.tokens[q]);
          return;
        }
        var v = row[k];
        var bg = div ? gs.color(v, -rowMax, rowMax, true) : gs.color(v, 0, rowMax || 1, false);
        s.style.background = bg;
        s.style.color = gs.textColor(bg);
        s.setAttribute("data-tip", d.tokens[q] + " (" + q + ") \u2192 " + d.tokens[k] + " (" + k +
          "): " + gs.fmt(v));
      });
    }

    function tipFor(q, k) {
      return d.heads[head] + "\n" + d.tokens[q] + " (" + q + ") \u2192 " + d.tokens[k] + " (" + k +
        "): " + gs.fmt(d.pattern[head][q][k]);
    }

    // Long contexts: one canvas instead of T*T elements, with the tooltip computed from the mouse.
    function drawCanvasMatrix() {
      matrix.textContent = "";
      var c = matrixCanvas(d.pattern[head], vmin, vmax, div);
      var size = Math.max(T * 2, Math.min(520, T * 6));
      c.style.width = c.style.height = size + "px";
      c.setAttribute("data-gs-owntip", "1");
      c.addEventListener("mousemove", function (ev) {
        var r = c.getBoundingClientRect();
        var k = Math.floor((ev.clientX - r.left) / r.width * T);
        var q = Math.floor((ev.clientY - r.top) / r.height * T);
        if (q >= 0 && q < T && k >= 0 && k < T) gs.showTip(tipFor(q, k), ev.clientX, ev.clientY);
      });
      c.addEventListener("mouseleave", gs.hideTip);
      matrix.appendChild(gs.el("div", "gs-attn-axes", "rows: query position, columns: key position"));
      matrix.appendChild(c);
    }

    function drawMatrix() {
      if (T > BIG) return drawCanvasMatrix();
      matrix.textContent = "";
      var grid = gs.el("div", "gs-attn-grid");
      grid.style.gridTemplateColumns = "auto repeat(" + T + ", " + cell + "px)";
      grid.appendChild(gs.el("div", "gs-attn-corner", showLabels ? "query \u2193 key \u2192" : ""));
      d.tokens.forEach(function (tok) {
        grid.appendChild(gs.el("div", "gs-attn-collabel", showLabels ? tok : ""));
      });
      var mat = d.pattern[head];
      for (var q = 0; q < T; q++) {
        var rowLabel = gs.el("div", "gs-attn-rowlabel", showLabels ? d.tokens[q] : "");
        // Hovering a query row label works like hovering that token in the strip below.
        rowLabel.addEventListener("mouseenter", showQuery.bind(null, q));
        grid.appendChild(rowLabel);
        for (var k = 0; k < mat[q].length; k++) {
          var c = gs.el("div", "gs-attn-cell");
          c.style.height = cell + "px";
          c.style.background = gs.color(mat[q][k], vmin, vmax, div);
          c.setAttribute("data-tip", tipFor(q, k));
          grid.appendChild(c);
        }
      }
      matrix.appendChild(grid);
    }

    function select(h) {
      head = h;
      buttons.forEach(function (b, i) { b.classList.toggle("gs-selected", i === h); });
      heading.textContent = d.heads[h] + "  \u00b7  colour scale " + gs.fmt(vmin) + " \u2192 " +
        gs.fmt(vmax);
      drawMatrix();
      showQuery(pinned);
    }

    if (H < 2) thumbs.style.display = "none"; // one head: the enlarged view says it all
    select(0);
  };
})();
