// fxmaps report: the graph's views (zoom, pan, blocks), the node panel and the node table.
// Everything it reads is in the page: nodes carry data-node, collapsed blocks data-block,
// the table's rows data-node, figures data-node and data-role ("maps" or "filters").
(() => {
  "use strict";
  const views = new Map([...document.querySelectorAll(".graph-view")].map(v => [v.dataset.view, v]));
  const panel = document.getElementById("node-panel");
  const table = document.getElementById("node-table");
  const rows = table ? [...table.tBodies[0].rows] : [];
  const rowOf = new Map(rows.map(row => [row.dataset.node, row]));
  const figures = {maps: new Map(), filters: new Map()};
  for (const figure of document.querySelectorAll("figure[data-node][data-role]")) {
    figures[figure.dataset.role]?.set(figure.dataset.node, figure);
  }
  const boxes = new Map();  // view -> its viewBox {x, y, w, h}
  let current = null;       // the view shown
  let dragged = false;

  // -- views: which is shown, zoom and pan --------------------------------------------------
  function whole(view) {
    const [x, y, w, h] = view.dataset.box.split(" ").map(Number);
    return {x, y, w, h};
  }
  function ratio(view) { return view.clientHeight / Math.max(1, view.clientWidth); }
  function setBox(view, box) {
    boxes.set(view, box);
    view.querySelector("svg").setAttribute("viewBox", `${box.x} ${box.y} ${box.w} ${box.h}`);
  }
  function start(view) {  // the drawing's full width from its top, never above natural size
    const all = whole(view), w = Math.max(all.w, view.clientWidth * 0.75), h = w * ratio(view);
    setBox(view, {x: all.x - (w - all.w) / 2, y: h > all.h ? all.y - (h - all.h) / 2 : all.y, w, h});
  }
  function fitAll(view) {
    const all = whole(view), r = ratio(view), w = Math.max(all.w, all.h / r);
    setBox(view, {x: all.x - (w - all.w) / 2, y: all.y - (w * r - all.h) / 2, w, h: w * r});
  }
  function show(name) {
    const view = views.get(name);
    if (!view || view === current) return view;
    for (const other of views.values()) other.hidden = other !== view;
    for (const button of document.querySelectorAll("button[data-view]")) {
      button.setAttribute("aria-pressed", String(button.dataset.view === name));
    }
    current = view;
    if (!boxes.has(view)) start(view);
    return view;
  }
  function focus(view, element) {  // centre the element, zooming out if it does not fit
    const svg = view.querySelector("svg"), rect = element.getBoundingClientRect();
    const inverse = svg.getScreenCTM().inverse();
    const a = new DOMPoint(rect.left, rect.top).matrixTransform(inverse);
    const b = new DOMPoint(rect.right, rect.bottom).matrixTransform(inverse);
    const box = boxes.get(view), r = ratio(view), open = uncovered(view);
    const w = Math.max(box.w, (b.x - a.x) * 1.3 / open, (b.y - a.y) * 1.3 / r);
    setBox(view, {x: (a.x + b.x) / 2 - w * open / 2, y: (a.y + b.y - w * r) / 2, w, h: w * r});
  }
  function uncovered(view) {  // the fraction of the view's width left of an open panel
    if (panel.hidden) return 1;
    const v = view.getBoundingClientRect(), left = panel.getBoundingClientRect().left;
    return left > v.left + v.width * 0.3 && left < v.right ? (left - v.left) / v.width : 1;
  }
  function zoom(view, factor, fx, fy) {  // fx, fy: the fixed point, as fractions of the view
    const box = boxes.get(view), w = box.w * factor, h = box.h * factor;
    setBox(view, {x: box.x + fx * (box.w - w), y: box.y + fy * (box.h - h), w, h});
  }
  for (const view of views.values()) {
    const svg = view.querySelector("svg");
    view.dataset.box = svg.getAttribute("viewBox");
    svg.removeAttribute("width");
    svg.removeAttribute("height");
    view.addEventListener("wheel", event => {
      event.preventDefault();
      const rect = view.getBoundingClientRect();
      zoom(view, Math.exp(event.deltaY * 0.0015),
           (event.clientX - rect.left) / rect.width, (event.clientY - rect.top) / rect.height);
    }, {passive: false});
    view.addEventListener("pointerdown", event => {
      if (event.button !== 0) return;
      const start = {x: event.clientX, y: event.clientY, box: boxes.get(view)};
      dragged = false;
      const move = e => {
        const dx = e.clientX - start.x, dy = e.clientY - start.y;
        if (!dragged && Math.hypot(dx, dy) < 4) return;
        dragged = true;
        view.classList.add("dragging");
        const scale = start.box.w / view.clientWidth;
        setBox(view, {...start.box, x: start.box.x - dx * scale, y: start.box.y - dy * scale});
      };
      const up = () => {
        view.classList.remove("dragging");
        window.removeEventListener("pointermove", move);
        window.removeEventListener("pointerup", up);
      };
      window.addEventListener("pointermove", move);
      window.addEventListener("pointerup", up);
    });
    view.addEventListener("click", event => {
      if (dragged) return;
      const node = event.target.closest("g.node[data-node]");
      if (!node) return;
      if (node.dataset.block !== undefined) expand(node.dataset.block);
      else select(node.dataset.node);
    });
  }
  function expand(block) {  // a collapsed block: the full view, centred on the block's cluster
    const view = show("full");
    if (!view) return;
    const cluster = [...view.querySelectorAll("g.cluster[data-block]")]
      .find(g => g.dataset.block === block);
    for (const g of view.querySelectorAll("g.cluster.focused")) g.classList.remove("focused");
    if (cluster) {
      cluster.classList.add("focused");
      focus(view, cluster);
    }
  }
  for (const button of document.querySelectorAll("button[data-view]")) {
    button.addEventListener("click", () => show(button.dataset.view));
  }
  document.querySelector("button[data-action='fit']")?.addEventListener("click", () => {
    if (current) fitAll(current);
  });
  document.querySelector("button[data-action='zoom-in']")?.addEventListener("click", () => {
    if (current) zoom(current, 1 / 1.5, 0.5, 0.5);
  });
  document.querySelector("button[data-action='zoom-out']")?.addEventListener("click", () => {
    if (current) zoom(current, 1.5, 0.5, 0.5);
  });

  // -- the node panel ---------------------------------------------------------------------
  function graphNode(view, name) {
    return [...view.querySelectorAll("g.node[data-node]")]
      .find(g => g.dataset.node === name && g.dataset.block === undefined);
  }
  function fact(list, term, value) {
    if (!value) return;
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = term;
    dd.textContent = value;
    list.append(dt, dd);
  }
  function picture(role, name, caption) {
    const figure = figures[role].get(name);
    if (!figure) return null;
    const copy = document.createElement("figure"), label = document.createElement("figcaption");
    copy.dataset.role = role;
    copy.append(figure.querySelector("img").cloneNode(), label);
    label.textContent = caption;
    return copy;
  }
  function select(name) {
    const row = rowOf.get(name);
    panel.replaceChildren();
    panel.dataset.node = name;
    panel.hidden = false;
    const close = document.createElement("button"), title = document.createElement("h3");
    close.className = "close";
    close.title = "close";
    close.textContent = "×";
    close.addEventListener("click", unselect);
    title.textContent = name;
    panel.append(close, title);
    for (const marked of document.querySelectorAll(".selected")) marked.classList.remove("selected");
    if (!row) {
      fact(panel.appendChild(document.createElement("dl")), "not found", "no node has this name");
      return;
    }
    row.classList.add("selected");
    const list = panel.appendChild(document.createElement("dl"));
    const headers = [...table.tHead.rows[0].cells].map(th => th.textContent);
    [...row.cells].forEach((cell, i) => { if (i > 0) fact(list, headers[i], cell.textContent); });
    for (const [role, caption] of [["maps", "feature maps"], ["filters", "filters"]]) {
      const copy = picture(role, name, caption);
      if (copy) panel.append(copy);
    }
    const view = [current, ...views.values()].find(v => v && graphNode(v, name));
    if (view) {
      show(view.dataset.view);
      const node = graphNode(view, name);
      node.classList.add("selected");
      focus(view, node);
    }
    if (decodeURIComponent(location.hash.slice(6)) !== name || !location.hash.startsWith("#node=")) {
      history.replaceState(null, "", "#node=" + encodeURIComponent(name));
    }
  }
  function unselect() {
    panel.hidden = true;
    delete panel.dataset.node;
    for (const marked of document.querySelectorAll(".selected")) marked.classList.remove("selected");
    history.replaceState(null, "", location.pathname + location.search);
  }
  function fromHash() {
    if (location.hash.startsWith("#node=")) select(decodeURIComponent(location.hash.slice(6)));
  }

  // -- the node table: search, sort, a row selects its node -------------------------------
  const search = document.getElementById("node-search");
  const count = document.getElementById("node-count");
  search?.addEventListener("input", () => {
    const words = search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    let shown = 0;
    for (const row of rows) {
      const text = row.textContent.toLowerCase();
      row.hidden = !words.every(word => text.includes(word));
      shown += !row.hidden;
    }
    if (count) count.textContent = `${shown} of ${rows.length} nodes`;
  });
  function key(cell, numeric) {
    if (!numeric) return cell.textContent;
    const digits = cell.textContent.replace(/[^0-9.]/g, "");
    return digits ? Number(digits) : -1;
  }
  if (table) {
    [...table.tHead.rows[0].cells].forEach((th, column) => {
      th.addEventListener("click", () => {
        const ascending = th.getAttribute("aria-sort") !== "ascending";
        const numeric = th.classList.contains("num");
        for (const other of table.tHead.rows[0].cells) other.removeAttribute("aria-sort");
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        const order = rows.map((row, i) => [key(row.cells[column], numeric), i, row]);
        const direction = ascending ? 1 : -1;  // ties keep the graph's order
        order.sort((a, b) => (a[0] < b[0] ? -direction : a[0] > b[0] ? direction : a[1] - b[1]));
        table.tBodies[0].append(...order.map(entry => entry[2]));
      });
    });
    table.tBodies[0].addEventListener("click", event => {
      const row = event.target.closest("tr[data-node]");
      if (row) select(row.dataset.node);
    });
  }

  if (views.size) show(views.has("blocks") ? "blocks" : "full");
  window.addEventListener("hashchange", fromHash);
  fromHash();
})();
