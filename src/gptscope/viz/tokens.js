/* Coloured tokens: one or more rows of tokens coloured by a value per token; with several
   value columns (neurons, features) a <select> picks which one colours the text. */
(function () {
  "use strict";
  var gs = window.gscope;
  if (!gs || gs.renderers.tokens) return;

  gs.renderers.tokens = function (root, d) {
    var k = 0;
    var controls = gs.el("div", "gs-controls");
    var rows = gs.el("div", "gs-token-rows");
    var legend = gs.el("div", "gs-legend-text");
    if (d.names.length > 1) {
      var label = gs.el("label", "", "Colour by ");
      var sel = document.createElement("select");
      d.names.forEach(function (n, i) {
        var o = gs.el("option", "", n);
        o.value = String(i);
        sel.appendChild(o);
      });
      sel.addEventListener("change", function () { k = parseInt(sel.value, 10); paint(); });
      label.appendChild(sel);
      controls.appendChild(label);
    }
    controls.appendChild(legend);
    root.appendChild(controls);
    root.appendChild(rows);

    var spans = d.examples.map(function (ex, r) {
      var row = gs.el("div", "gs-tokens gs-token-row");
      if (d.examples.length > 1) row.appendChild(gs.el("span", "gs-row-label", ex.label));
      var list = ex.tokens.map(function (tok) {
        var s = gs.el("span", "gs-tok", tok);
        row.appendChild(s);
        return s;
      });
      rows.appendChild(row);
      return list;
    });

    function paint() {
      var lo = d.ranges[k][0], hi = d.ranges[k][1], div = d.diverging[k];
      legend.textContent = div
        ? "blue = negative, red = positive, scale \u00b1" + gs.fmt(Math.max(Math.abs(lo), Math.abs(hi)))
        : "white = " + gs.fmt(lo) + ", dark = " + gs.fmt(hi);
      d.examples.forEach(function (ex, r) {
        spans[r].forEach(function (s, i) {
          var v = ex.values[i][k];
          var bg = gs.color(v, lo, hi, div);
          s.style.background = bg;
          s.style.color = gs.textColor(bg);
          s.setAttribute("data-tip", ex.raw[i] + "\n" + d.names[k] + " = " + gs.fmt(v) +
            "   (position " + i + ")");
        });
      });
    }
    paint();
  };
})();
