// DeepTree book: a tiny surface-mesh viewer on a 2D canvas (no WebGL, no library, no network).
// Each <div class="deeptree-mesh" data-mesh="KEY"> gets a canvas showing
// window.deeptreeMeshes[KEY], written by deeptree/book/mesh.py. Drag to rotate, wheel or the
// buttons to zoom, double-click to reset. Faces are drawn back to front with Lambert shading.
(function () {
  "use strict";

  function decode(b64, bytesPerItem) {
    var raw = atob(b64);
    var bytes = new Uint8Array(raw.length);
    for (var i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return bytesPerItem === 4 ? new Uint32Array(bytes.buffer) : new Uint16Array(bytes.buffer);
  }

  function setUp(element) {
    var mesh = (window.deeptreeMeshes || {})[element.getAttribute("data-mesh")];
    if (!mesh) {
      element.textContent = "3D view: mesh data missing (" + element.getAttribute("data-mesh") + ")";
      return;
    }
    var codes = decode(mesh.vertices, 2);
    var faces = decode(mesh.faces, mesh.indexBytes);
    var nv = codes.length / 3, nf = faces.length / 3;
    var pos = new Float32Array(codes.length);
    var radius = 0;
    for (var v = 0; v < nv; v++) {
      for (var a = 0; a < 3; a++) {
        pos[3 * v + a] = mesh.offset[a] + mesh.scale[a] * codes[3 * v + a];
      }
      radius = Math.max(radius, Math.hypot(pos[3 * v], pos[3 * v + 1], pos[3 * v + 2]));
    }
    radius = radius || 1;

    var canvas = document.createElement("canvas");
    canvas.className = "deeptree-mesh-canvas";
    canvas.setAttribute("role", "img");
    canvas.setAttribute("aria-label", mesh.title);
    var bar = document.createElement("div");
    bar.className = "deeptree-mesh-bar";
    var caption = document.createElement("span");
    caption.textContent = mesh.title + " (" + nf + " triangles; drag to rotate, wheel to zoom)";
    bar.appendChild(caption);
    element.appendChild(canvas);
    element.appendChild(bar);

    // View: yaw around the world z axis (head up), pitch around the screen x axis.
    var yaw = 0.5, pitch = -0.25, zoom = 1;
    function button(label, action) {
      var b = document.createElement("button");
      b.type = "button";
      b.textContent = label;
      b.addEventListener("click", function () { action(); draw(); });
      bar.appendChild(b);
    }
    button("+", function () { zoom *= 1.25; });
    button("\u2212", function () { zoom /= 1.25; });
    button("reset", function () { yaw = 0.5; pitch = -0.25; zoom = 1; });

    // Camera frame in mm: cx to the viewer's right, cu up, cd away from the viewer.
    var cx = new Float32Array(nv), cu = new Float32Array(nv), cd = new Float32Array(nv);
    var order = new Uint32Array(nf), depth = new Float32Array(nf);
    var light = [-0.3, 0.5, -0.81];  // towards the viewer, from the upper left

    function draw() {
      var width = Math.max(element.clientWidth, 200);
      var height = Math.round(Math.min(width * 0.75, 480));
      var ratio = window.devicePixelRatio || 1;
      canvas.width = Math.round(width * ratio);
      canvas.height = Math.round(height * ratio);
      canvas.style.width = width + "px";
      canvas.style.height = height + "px";
      var ctx = canvas.getContext("2d");
      ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
      ctx.fillStyle = "#fafafa";
      ctx.fillRect(0, 0, width, height);
      var cy = Math.cos(yaw), syw = Math.sin(yaw), cp = Math.cos(pitch), sp = Math.sin(pitch);
      var k = zoom * 0.45 * Math.min(width, height) / radius;
      for (var v = 0; v < nv; v++) {
        // World RAS (x to the patient's right, y anterior, z to the head); the camera faces
        // the patient from the front, so the patient's right is on the viewer's left.
        var x = pos[3 * v], y = pos[3 * v + 1], z = pos[3 * v + 2];
        var x1 = cy * x - syw * y, y1 = syw * x + cy * y;
        cx[v] = -x1;
        cu[v] = sp * y1 + cp * z;
        cd[v] = -(cp * y1 - sp * z);
      }
      for (var f = 0; f < nf; f++) {
        order[f] = f;
        depth[f] = cd[faces[3 * f]] + cd[faces[3 * f + 1]] + cd[faces[3 * f + 2]];
      }
      // Painter's algorithm: far faces first.
      var sorted = Array.prototype.slice.call(order).sort(function (p, q) { return depth[q] - depth[p]; });
      for (var n = 0; n < nf; n++) {
        var t = sorted[n];
        var i0 = faces[3 * t], i1 = faces[3 * t + 1], i2 = faces[3 * t + 2];
        var ax = cx[i1] - cx[i0], ay = cu[i1] - cu[i0], az = cd[i1] - cd[i0];
        var bx = cx[i2] - cx[i0], by = cu[i2] - cu[i0], bz = cd[i2] - cd[i0];
        var nx = ay * bz - az * by, ny = az * bx - ax * bz, nz = ax * by - ay * bx;
        var norm = Math.hypot(nx, ny, nz) || 1;
        var shade = Math.abs(nx * light[0] + ny * light[1] + nz * light[2]) / norm;
        shade = 0.3 + 0.7 * shade;
        var r = Math.round(215 * shade), g = Math.round(95 * shade), b = Math.round(80 * shade);
        ctx.fillStyle = ctx.strokeStyle = "rgb(" + r + "," + g + "," + b + ")";
        ctx.beginPath();
        ctx.moveTo(width / 2 + k * cx[i0], height / 2 - k * cu[i0]);
        ctx.lineTo(width / 2 + k * cx[i1], height / 2 - k * cu[i1]);
        ctx.lineTo(width / 2 + k * cx[i2], height / 2 - k * cu[i2]);
        ctx.closePath();
        ctx.fill();
        ctx.stroke();
      }
    }

    // Redraw at most once per frame however many pointer or wheel events arrive.
    var pending = false;
    function schedule() {
      if (pending) return;
      pending = true;
      window.requestAnimationFrame(function () { pending = false; draw(); });
    }

    var dragging = null;
    canvas.addEventListener("pointerdown", function (e) {
      dragging = [e.clientX, e.clientY];
      canvas.setPointerCapture(e.pointerId);
    });
    canvas.addEventListener("pointermove", function (e) {
      if (!dragging) return;
      yaw += (e.clientX - dragging[0]) * 0.01;
      pitch = Math.max(-1.5, Math.min(1.5, pitch + (e.clientY - dragging[1]) * 0.01));
      dragging = [e.clientX, e.clientY];
      schedule();
    });
    canvas.addEventListener("pointerup", function () { dragging = null; });
    canvas.addEventListener("dblclick", function () { yaw = 0.5; pitch = -0.25; zoom = 1; draw(); });
    canvas.addEventListener("wheel", function (e) {
      e.preventDefault();
      zoom *= e.deltaY < 0 ? 1.1 : 1 / 1.1;
      schedule();
    }, { passive: false });
    window.addEventListener("resize", schedule);
    draw();
  }

  function start() {
    var elements = document.querySelectorAll(".deeptree-mesh");
    for (var i = 0; i < elements.length; i++) setUp(elements[i]);
  }
  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
