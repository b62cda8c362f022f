/* The author page's own part: the draft's state, the check, and Publish.
 *
 * Long-polls {base}claude/api/draft?since=<version> (the server sends the draft to the course
 * service a moment after Claude's files stop changing, and keeps what it answered): the
 * check's errors and warnings go to the right-hand panel, the preview to the stage panel
 * (panels.js renders it as learners will see it). "Check" saves and checks now; "Publish"
 * saves, then publishes for the classes ticked (the course service refuses a draft with
 * errors, and classes the instructor does not instruct). Every text is set with textContent.
 */
(function () {
  "use strict";

  var config = JSON.parse(document.getElementById("claudehub-config").textContent);
  var apiUrl = config.apiUrl;
  var statusEl = document.getElementById("draft-status");
  var summary = document.getElementById("check-summary");
  var errorBox = document.getElementById("draft-error");
  var errorsList = document.getElementById("check-errors");
  var warningsList = document.getElementById("check-warnings");
  var checkButton = document.getElementById("check-now");
  var form = document.getElementById("publish-form");
  var classesBox = document.getElementById("publish-classes");
  var courseInput = document.getElementById("publish-course");
  var publishButton = document.getElementById("publish");
  var result = document.getElementById("publish-result");
  var version = -1;
  var lastPreview = null;

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (k) {
      node.setAttribute(k, attrs[k]);
    });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function api(method, path, body) {
    var opts = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (config.xsrfToken) opts.headers["X-XSRFToken"] = config.xsrfToken;
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(apiUrl + path, opts).then(function (resp) {
      return resp.text().then(function (text) {
        var data = null;
        try {
          data = text ? JSON.parse(text) : null;
        } catch (e) {
          data = null;
        }
        if (!resp.ok) {
          var err = new Error((data && (data.message || data.reason)) || resp.statusText || "request failed");
          err.status = resp.status;
          err.errors = (data && data.errors) || [];
          throw err;
        }
        return data;
      });
    });
  }

  function entryText(entry) {
    if (typeof entry === "string") return { where: "", reason: entry };
    var where = [entry.file, entry.path].filter(function (x) {
      return x;
    }).join(": ");
    return { where: where, reason: entry.reason || entry.message || JSON.stringify(entry) };
  }

  function fillList(list, entries, kind) {
    list.textContent = "";
    (entries || []).forEach(function (entry) {
      var t = entryText(entry);
      var li = el("li", { class: "ch-check-" + kind });
      if (t.where) li.appendChild(el("span", { class: "ch-where" }, t.where));
      li.appendChild(el("span", { class: "ch-reason" }, t.reason));
      list.appendChild(li);
    });
  }

  function show(state) {
    version = state.version;
    if (state.error) {
      errorBox.hidden = false;
      errorBox.textContent = state.error;
    } else {
      errorBox.hidden = true;
      errorBox.textContent = "";
    }
    if (!state.ready) {
      statusEl.textContent = state.error ? "the draft could not be loaded" : "loading the draft…";
    } else if (state.saving) {
      statusEl.textContent = "checking…";
    } else if (state.saved_at) {
      statusEl.textContent = "checked " + new Date(state.saved_at * 1000).toLocaleTimeString();
    }
    var check = state.check;
    if (check) {
      var errors = check.errors || [];
      var warnings = check.warnings || [];
      summary.textContent =
        errors.length + " error" + (errors.length === 1 ? "" : "s") + ", " +
        warnings.length + " warning" + (warnings.length === 1 ? "" : "s") +
        (errors.length ? ": fix the errors before publishing." : ".");
      summary.className = "ch-summary " + (errors.length ? "ch-has-errors" : "ch-clean");
      fillList(errorsList, errors, "error");
      fillList(warningsList, warnings, "warning");
    }
    var preview = JSON.stringify(state.preview || null);
    if (preview !== lastPreview && window.claudehubPanels) {
      lastPreview = preview;
      window.claudehubPanels.setPreview(state.preview || null);
    }
  }

  function poll() {
    api("GET", "draft?since=" + version)
      .then(function (state) {
        show(state);
        setTimeout(poll, 0);
      })
      .catch(function () {
        setTimeout(poll, 3000);
      });
  }

  checkButton.addEventListener("click", function () {
    checkButton.disabled = true;
    api("POST", "draft/check")
      .then(show, function (err) {
        errorBox.hidden = false;
        errorBox.textContent = err.message;
      })
      .then(function () {
        checkButton.disabled = false;
      });
  });

  (config.authorClasses || []).forEach(function (name) {
    var label = el("label");
    var box = el("input", { type: "checkbox", name: "classes", value: name });
    label.appendChild(box);
    label.appendChild(document.createTextNode(" " + name));
    classesBox.appendChild(label);
  });
  if (!(config.authorClasses || []).length) {
    classesBox.appendChild(el("p", { class: "ch-hint" }, "You instruct no class: nothing to publish for."));
    publishButton.disabled = true;
  }

  form.addEventListener("submit", function (ev) {
    ev.preventDefault();
    var classes = Array.prototype.slice
      .call(classesBox.querySelectorAll("input[name=classes]:checked"))
      .map(function (box) {
        return box.value;
      });
    result.textContent = "";
    if (!classes.length) {
      result.appendChild(el("p", { class: "ch-feedback ch-wrong" }, "Tick the classes to publish the course for."));
      return;
    }
    publishButton.disabled = true;
    result.appendChild(el("p", { class: "ch-hint" }, "Publishing…"));
    var body = { classes: classes };
    if (courseInput.value.trim()) body.course = courseInput.value.trim();
    api("POST", "draft/publish", body)
      .then(function (done) {
        result.textContent = "";
        var p = el("p", { class: "ch-feedback ch-correct", id: "published" });
        p.textContent =
          "Published " + done.course + " (version " + done.version + ") for " + (done.classes || classes).join(", ") + ".";
        result.appendChild(p);
        if (done.push_error) result.appendChild(el("p", { class: "ch-hint" }, "Not pushed to the remote: " + done.push_error));
      })
      .catch(function (err) {
        result.textContent = "";
        result.appendChild(el("p", { class: "ch-feedback ch-wrong", id: "publish-refused" }, "Not published: " + err.message));
        var list = el("ul", { class: "ch-check-list ch-check-errors" });
        result.appendChild(list);
        fillList(list, err.errors, "error");
      })
      .then(function () {
        publishButton.disabled = false;
      });
  });

  poll();
})();
