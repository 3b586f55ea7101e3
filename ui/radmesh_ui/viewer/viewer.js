// radmesh viewer: the study's CT with the answer's label map, in NiiVue.
//
// Loaded in an iframe of the chat page as  <prefix>/viewer/?t=TOKEN[&jump=x,y,z]
// Files come from  <prefix>/files/TOKEN/  (state.json names the CT and the label map).
// The chat page talks to it with window.postMessage (same origin only):
//   {type: "radmesh-refresh"}            reread state.json (new study, new label map)
//   {type: "radmesh-jump", lps: [x,y,z]} move the crosshair to a point (DICOM LPS mm)
// NiiVue's world space is RAS: x -> -x, y -> -y.
(function () {
  "use strict";
  const params = new URLSearchParams(window.location.search);
  const token = params.get("t") || "";
  const base = "../files/" + encodeURIComponent(token) + "/";
  const messageEl = document.getElementById("message");
  const legendEl = document.getElementById("legend");
  const locationEl = document.getElementById("location");
  const opacityEl = document.getElementById("opacity");

  function say(text) {
    messageEl.textContent = text;
    messageEl.hidden = !text;
  }

  const api = { ready: false, state: null, loads: 0, error: null };
  window.radmeshViewer = api;

  if (typeof niivue === "undefined" || !niivue.Niivue) {
    say("NiiVue is not installed: run scripts/bootstrap.sh");
    api.error = "niivue missing";
    return;
  }

  let win = [400, 50];
  let opacity = parseFloat(opacityEl.value);
  let state = { version: -1, ct: null, labels: null, legend: [] };
  let ctVol = null;
  let labelVol = null;
  let pendingJump = null;
  const jumpParam = params.get("jump");
  if (jumpParam) {
    const v = jumpParam.split(",").map(Number);
    if (v.length === 3 && v.every(Number.isFinite)) pendingJump = v;
  }

  const nv = new niivue.Niivue({
    backColor: [0, 0, 0, 1],
    crosshairColor: [1, 0.25, 0.25, 1],
    show3Dcrosshair: true,
    isColorbar: false,
    loadingText: "",
    dragAndDropEnabled: false,
    multiplanarShowRender: 0, // NEVER; the 3D button shows the rendering
    isResizeCanvas: true,
  });
  api.nv = nv;

  nv.onLocationChange = function (data) {
    if (data && data.string) locationEl.textContent = data.string;
  };

  function applyWindow() {
    if (!ctVol) return;
    ctVol.cal_min = win[1] - win[0] / 2;
    ctVol.cal_max = win[1] + win[0] / 2;
    nv.updateGLVolume();
  }

  function labelLut(legend) {
    const R = [], G = [], B = [], A = [], I = [], labels = [];
    const byIndex = {};
    for (const item of legend) byIndex[item.index] = item;
    const top = Math.max(1, ...legend.map((x) => x.index));
    for (let i = 0; i <= top; i++) {
      const item = byIndex[i];
      const hex = item ? item.color : "#000000";
      R.push(parseInt(hex.slice(1, 3), 16));
      G.push(parseInt(hex.slice(3, 5), 16));
      B.push(parseInt(hex.slice(5, 7), 16));
      A.push(item && i > 0 ? 255 : 0);
      I.push(i);
      labels.push(item ? item.name : "");
    }
    return { R: R, G: G, B: B, A: A, I: I, labels: labels };
  }

  function showLegend(legend) {
    legendEl.textContent = "";
    for (const item of legend) {
      const span = document.createElement("span");
      span.className = "item";
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = item.color;
      span.appendChild(sw);
      span.appendChild(document.createTextNode(item.name));
      legendEl.appendChild(span);
    }
  }

  function applyLabels(legend) {
    if (!labelVol) return;
    labelVol.setColormapLabel(labelLut(legend));
    labelVol.opacity = opacity;
    nv.updateGLVolume();
  }

  function jumpLPS(lps) {
    if (!ctVol) {
      pendingJump = lps;
      return false;
    }
    const ras = [-Number(lps[0]), -Number(lps[1]), Number(lps[2])];
    nv.scene.crosshairPos = nv.mm2frac(ras);
    nv.createOnLocationChange();
    nv.drawScene();
    return true;
  }

  function crosshairRAS() {
    if (!ctVol) return null;
    const mm = nv.frac2mm(nv.scene.crosshairPos);
    return [mm[0], mm[1], mm[2]];
  }

  async function apply(s) {
    if (!s.ct) {
      for (const v of nv.volumes.slice()) nv.removeVolume(v);
      ctVol = labelVol = null;
      showLegend([]);
      say("Load a study (a sample, a NIfTI file or a DICOM .zip) to view it here.");
      return;
    }
    if (s.ct !== state.ct || !ctVol) {
      say("Loading the CT…");
      const list = [{ url: base + s.ct, name: s.ct, colormap: "gray" }];
      if (s.labels) list.push({ url: base + s.labels, name: s.labels, opacity: opacity });
      await nv.loadVolumes(list);
      ctVol = nv.volumes[0] || null;
      labelVol = s.labels ? nv.volumes[1] || null : null;
      applyWindow();
      say("");
    } else if (s.labels !== state.labels) {
      if (labelVol) {
        nv.removeVolume(labelVol);
        labelVol = null;
      }
      if (s.labels) {
        labelVol = await nv.addVolumeFromUrl({ url: base + s.labels, name: s.labels, opacity: opacity });
      }
    }
    applyLabels(s.legend || []);
    showLegend(s.labels ? s.legend || [] : []);
    if (s.focus && (s.labels !== state.labels || s.ct !== state.ct) && !pendingJump) pendingJump = s.focus;
    api.loads += 1;
  }

  let chain = Promise.resolve();
  function refresh() {
    chain = chain.then(async function () {
      if (!token) {
        say("No study loaded yet.");
        return;
      }
      let s;
      try {
        const r = await fetch(base + "state.json", { cache: "no-store", credentials: "same-origin" });
        if (!r.ok) {
          say("Load a study to view it here.");
          return;
        }
        s = await r.json();
      } catch (e) {
        say("The viewer cannot reach the UI server.");
        return;
      }
      if (s.version === state.version) return;
      try {
        await apply(s);
        state = s;
        api.state = s;
        api.error = null;
        if (pendingJump && ctVol) {
          const j = pendingJump;
          pendingJump = null;
          jumpLPS(j);
        }
      } catch (e) {
        api.error = String(e);
        say("The viewer could not load the study: " + e);
      }
    });
    return chain;
  }

  // ---- toolbar --------------------------------------------------------------------------
  const views = {
    multiplanar: nv.sliceTypeMultiplanar, axial: nv.sliceTypeAxial, coronal: nv.sliceTypeCoronal,
    sagittal: nv.sliceTypeSagittal, render: nv.sliceTypeRender,
  };
  function activate(buttons, chosen) {
    for (const b of buttons) b.classList.toggle("active", b === chosen);
  }
  const viewButtons = document.querySelectorAll("button[data-view]");
  for (const b of viewButtons) {
    b.addEventListener("click", function () {
      nv.setSliceType(views[b.dataset.view]);
      activate(viewButtons, b);
    });
  }
  const windowButtons = document.querySelectorAll("button[data-window]");
  for (const b of windowButtons) {
    b.addEventListener("click", function () {
      win = b.dataset.window.split(",").map(Number);
      applyWindow();
      activate(windowButtons, b);
    });
  }
  opacityEl.addEventListener("input", function () {
    opacity = parseFloat(opacityEl.value);
    if (labelVol) {
      labelVol.opacity = opacity;
      nv.updateGLVolume();
    }
  });

  window.addEventListener("message", function (event) {
    if (event.origin !== window.location.origin) return;
    const m = event.data || {};
    if (m.type === "radmesh-refresh") refresh();
    else if (m.type === "radmesh-jump" && Array.isArray(m.lps) && m.lps.length === 3) {
      chain = chain.then(function () { jumpLPS(m.lps); });
    }
  });

  // ---- for tests and scripts ------------------------------------------------------------
  api.refresh = refresh;
  api.jumpLPS = jumpLPS;
  api.crosshairRAS = crosshairRAS;
  api.setWindow = function (w, l) { win = [w, l]; applyWindow(); };
  api.hasCT = function () { return !!ctVol; };
  api.hasLabels = function () { return !!labelVol; };
  api.snapshot = function (withCrosshair) {
    // The drawing buffer is not preserved: draw and read it in the same task.
    const width = nv.opts.crosshairWidth;
    if (!withCrosshair) nv.opts.crosshairWidth = 0;
    nv.drawScene();
    const url = nv.canvas.toDataURL("image/png");
    nv.opts.crosshairWidth = width;
    nv.drawScene();
    return url;
  };

  nv.attachTo("gl").then(function () {
    nv.setSliceType(nv.sliceTypeMultiplanar);
    api.ready = true;
    return refresh();
  }).catch(function (e) {
    api.error = String(e);
    say("The viewer needs WebGL 2, which this browser does not offer (" + e + ").");
  });
})();
