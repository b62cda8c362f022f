/* claudehub stage and progress panels.
 *
 * Fills <aside id="stage-panel"> (stages in order, the current one open with its
 * concepts and quiz) and <aside id="progress-panel"> (stages done, when and how,
 * course complete, resume point). Talks only to this server's claudehub API
 * ({base}claude/api/...), which calls the course+progress service server-side.
 *
 * Course text arrives as HTML the service rendered from Markdown and sanitised
 * (markdown-it-py with raw HTML off + nh3). It is cleaned again here with an
 * allow-list before it touches the DOM, and everything else (titles, options,
 * messages) is set with textContent only, so a course cannot run script here.
 *
 * Images: an <img> survives only when its src is one of the course service's own
 * image URLs (the course's "assets_url" prefix); it is then loaded through this
 * server ({base}claude/api/courses/<id>/assets/<path>), which fetches it from the
 * service with the server's token. Any other image (a remote http(s) URL, data:)
 * is never loaded: its alt text is shown instead (no tracking from the learner's
 * browser, nothing needed from outside an air-gapped cluster).
 *
 * The concept graph (concepts as nodes, prerequisites as arrows, completed concepts
 * marked) is SVG drawn here: no library, nothing fetched.
 *
 * Author sessions (config.draftId, templates/author.html): the same stage panel shows the
 * draft's preview as learners will see it, handed in by author.js
 * (window.claudehubPanels.setPreview); its quizzes are judged against the saved draft
 * ({base}claude/api/draft/judge), nothing is recorded, and the right-hand panel is
 * author.js's (the check and Publish), not progress.
 */
(function () {
  "use strict";

  var stagePanel = document.getElementById("stage-panel");
  var progressPanel = document.getElementById("progress-panel");
  if (!stagePanel || !progressPanel) return;

  function readConfig() {
    if (window.claudehub && window.claudehub.config) return window.claudehub.config;
    var el = document.getElementById("claudehub-config");
    try {
      return el ? JSON.parse(el.textContent || "{}") : {};
    } catch (e) {
      return {};
    }
  }

  var config = readConfig();
  var draftMode = !!config.draftId;
  var apiUrl = config.apiUrl || location.pathname.replace(/claude\/?$/, "") + "claude/api/";

  var state = {
    courseId: null,
    course: null,
    progress: null,
    open: {}, // stage number -> bool (user toggled)
    feedback: {}, // quiz id -> {status, message, explanation}
    drafts: {}, // quiz id -> typed/selected answer
    busy: {},
  };

  /* ---------------------------------------------------------------- safety */

  var ALLOWED_TAGS = {
    A: 1, ABBR: 1, B: 1, BLOCKQUOTE: 1, BR: 1, CODE: 1, DEL: 1, EM: 1, H1: 1, H2: 1,
    H3: 1, H4: 1, H5: 1, H6: 1, HR: 1, I: 1, KBD: 1, LI: 1, OL: 1, P: 1, PRE: 1, S: 1,
    STRONG: 1, SUB: 1, SUP: 1, TABLE: 1, TBODY: 1, TD: 1, TH: 1, THEAD: 1, TR: 1, UL: 1,
    IMG: 1, SPAN: 1,
  };
  var DROP_WITH_CONTENT = { SCRIPT: 1, STYLE: 1, IFRAME: 1, OBJECT: 1, EMBED: 1, TEMPLATE: 1, SVG: 1, MATH: 1 };

  /* The URL this page loads a course image from, or null when src is not one of the
   * course service's image URLs (then the image is not loaded at all). */
  function imageUrl(src) {
    if (draftMode) return draftImageUrl(src);
    var course = state.course;
    var base = course && course.assets_url;
    if (!base || !state.courseId || typeof src !== "string" || src.indexOf(base) !== 0) return null;
    var rest = src.slice(base.length);
    var query = rest.indexOf("?");
    if (query !== -1) {
      // the service's signature (for pages without its cookie), perhaps with a card's
      // thumbnail width; this server sends its token and the panel shows the full image
      if (!/^exp=\d+&sig=[0-9a-f]{32}(&w=\d+)?$/.test(rest.slice(query + 1))) return null;
      rest = rest.slice(0, query);
    }
    if (!rest || /[?#\\]/.test(rest)) return null;
    var parts = rest.split("/");
    for (var i = 0; i < parts.length; i++) {
      var part;
      try {
        part = decodeURIComponent(parts[i]);
      } catch (e) {
        return null;
      }
      if (part === "" || part === "." || part === ".." || part.indexOf("/") !== -1) return null;
    }
    return apiUrl + "courses/" + encodeURIComponent(state.courseId) + "/assets/" + rest;
  }

  /* A draft's preview image: the course service's signed link to this draft's own image
   * ({prefix}services/progress/api/drafts/<id>/assets/<path>?exp=..&sig=..), on this site,
   * loaded as it is (the signature stands in for the service's cookie); anything else, null. */
  function draftImageUrl(src) {
    if (typeof src !== "string" || src.charAt(0) !== "/" || src.charAt(1) === "/") return null;
    var marker = "/services/progress/api/drafts/" + encodeURIComponent(config.draftId) + "/assets/";
    var at = src.indexOf(marker);
    if (at === -1 || /[?#\\]/.test(src.slice(0, at))) return null;
    var rest = src.slice(at + marker.length);
    var query = rest.indexOf("?");
    if (query === -1 || !/^exp=\d+&sig=[0-9a-f]{32}(&w=\d+)?$/.test(rest.slice(query + 1))) return null;
    var parts = rest.slice(0, query).split("/");
    for (var i = 0; i < parts.length; i++) {
      var part;
      try {
        part = decodeURIComponent(parts[i]);
      } catch (e) {
        return null;
      }
      if (part === "" || part === "." || part === ".." || /[\/\\#?]/.test(part)) return null;
    }
    return src;
  }

  /* An image that is not loaded: its alt text, marked as a picture's description. */
  function altText(node) {
    var span = node.ownerDocument.createElement("span");
    span.className = "ch-image-alt";
    span.textContent = node.getAttribute("alt") || "";
    return span;
  }

  function cleanImage(img) {
    var url = imageUrl(img.getAttribute("src"));
    if (!url) {
      var alt = img.getAttribute("alt");
      if (alt) img.parentNode.insertBefore(altText(img), img);
      img.remove();
      return;
    }
    var alt2 = img.getAttribute("alt") || "";
    var title = img.getAttribute("title");
    Array.prototype.slice.call(img.attributes).forEach(function (attr) {
      img.removeAttribute(attr.name);
    });
    img.setAttribute("alt", alt2);
    if (title) img.setAttribute("title", title);
    img.setAttribute("loading", "lazy");
    img.setAttribute("referrerpolicy", "no-referrer");
    img.setAttribute("class", "ch-image");
    img.setAttribute("src", url);
  }

  function cleanNode(node) {
    var children = Array.prototype.slice.call(node.childNodes);
    children.forEach(function (child) {
      if (child.nodeType === 3) return; // text
      if (child.nodeType !== 1) {
        child.remove();
        return;
      }
      var tag = child.tagName.toUpperCase();
      if (DROP_WITH_CONTENT[tag]) {
        child.remove();
        return;
      }
      cleanNode(child);
      if (!ALLOWED_TAGS[tag]) {
        // keep the text, lose the element
        while (child.firstChild) child.parentNode.insertBefore(child.firstChild, child);
        child.remove();
        return;
      }
      if (tag === "IMG") {
        cleanImage(child);
        return;
      }
      Array.prototype.slice.call(child.attributes).forEach(function (attr) {
        var name = attr.name.toLowerCase();
        var keep = (tag === "A" && (name === "href" || name === "title")) ||
          ((tag === "TD" || tag === "TH") && name === "align") ||
          (tag === "SPAN" && name === "class" && attr.value === "ch-image-alt");
        if (!keep) child.removeAttribute(attr.name);
      });
      if (tag === "A") {
        var href = child.getAttribute("href") || "";
        if (!/^(https?:|mailto:)/i.test(href.trim())) child.removeAttribute("href");
        child.setAttribute("rel", "noopener noreferrer nofollow");
        child.setAttribute("target", "_blank");
      }
    });
  }

  /* Parse into an inert document (no script runs, no resource loads), clean, import. */
  function safeFragment(html) {
    var doc = document.implementation.createHTMLDocument("");
    var holder = doc.createElement("div");
    holder.innerHTML = String(html || "");
    cleanNode(holder);
    var frag = document.createDocumentFragment();
    Array.prototype.slice.call(holder.childNodes).forEach(function (n) {
      frag.appendChild(document.importNode(n, true));
    });
    return frag;
  }

  function el(tag, attrs, text) {
    var node = document.createElement(tag);
    if (attrs) {
      Object.keys(attrs).forEach(function (k) {
        if (k === "class") node.className = attrs[k];
        else node.setAttribute(k, attrs[k]);
      });
    }
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  function rich(tag, cls, html) {
    var node = el(tag, { class: cls });
    node.appendChild(safeFragment(html));
    return node;
  }

  /* ------------------------------------------------------------------ api */

  function api(method, path, body) {
    var opts = {
      method: method,
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    };
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
          var msg = (data && (data.message || data.reason)) || resp.statusText || "request failed";
          var err = new Error(msg);
          err.status = resp.status;
          throw err;
        }
        return data;
      });
    });
  }

  /* ------------------------------------------------------------- helpers */

  function stageState(number) {
    if (!state.progress) return null;
    for (var i = 0; i < state.progress.stages.length; i++) {
      if (state.progress.stages[i].number === number) return state.progress.stages[i];
    }
    return null;
  }

  function fmtTime(iso) {
    if (!iso) return "";
    var d = new Date(iso);
    return isNaN(d.getTime()) ? "" : d.toLocaleString();
  }

  function currentStage() {
    if (!state.progress) return state.course && state.course.stages.length ? state.course.stages[0].number : null;
    return state.progress.resume_stage;
  }

  /* --------------------------------------------------------- stage panel */

  function renderQuiz(quiz, stage, sstate) {
    var box = el("div", { class: "ch-quiz", id: "quiz-" + quiz.id, "data-quiz-id": quiz.id });
    box.appendChild(el("h4", { class: "ch-quiz-title" }, "Quiz"));
    box.appendChild(rich("div", "ch-quiz-question", quiz.question_html));
    var qstate = sstate && sstate.quizzes ? sstate.quizzes[quiz.id] : null;
    var passed = qstate && qstate.passed;
    var locked = sstate && !sstate.unlocked;
    var form = el("form", { class: "ch-quiz-form" });
    var name = "ch-q-" + quiz.id;
    if (quiz.options && quiz.options.length) {
      var list = el("ol", { class: "ch-options" });
      quiz.options.forEach(function (opt, i) {
        var li = el("li");
        var label = el("label");
        var input = el("input", { type: "radio", name: name, value: String(i + 1) });
        if (state.drafts[quiz.id] === String(i + 1)) input.checked = true;
        input.addEventListener("change", function () {
          state.drafts[quiz.id] = input.value;
        });
        label.appendChild(input);
        label.appendChild(el("span", { class: "ch-option-text" }, opt));
        li.appendChild(label);
        list.appendChild(li);
      });
      form.appendChild(list);
    } else {
      var area = el("textarea", { class: "ch-answer", rows: "3", name: name, "aria-label": "Your answer" });
      area.value = state.drafts[quiz.id] || "";
      area.addEventListener("input", function () {
        state.drafts[quiz.id] = area.value;
      });
      form.appendChild(area);
      if (quiz.judged_by === "tutor") {
        form.appendChild(el("p", { class: "ch-hint" }, "Your tutor judges this one: discuss your answer with Claude in the terminal."));
      }
    }
    var submit = el("button", { type: "submit", class: "ch-submit" }, passed ? "Answered correctly" : "Check answer");
    if (locked) {
      submit.disabled = true;
      submit.textContent = "Locked";
    }
    if (state.busy[quiz.id]) submit.disabled = true;
    form.appendChild(submit);
    form.addEventListener("submit", function (ev) {
      ev.preventDefault();
      var answer = state.drafts[quiz.id];
      if (!answer || !String(answer).trim()) {
        state.feedback[quiz.id] = { status: "wrong", message: "Choose or type an answer first." };
        renderStages();
        return;
      }
      submitAnswer(quiz, String(answer));
    });
    box.appendChild(form);
    var fb = state.feedback[quiz.id];
    if (fb) {
      var f = el("div", { class: "ch-feedback ch-" + fb.status, role: "status" });
      f.appendChild(el("strong", null, fb.message));
      if (fb.explanation) f.appendChild(el("p", { class: "ch-explanation" }, fb.explanation));
      box.appendChild(f);
    } else if (passed) {
      box.appendChild(el("div", { class: "ch-feedback ch-correct", role: "status" }, "You answered this correctly."));
    }
    return box;
  }

  function renderStage(stage) {
    var sstate = stageState(stage.number);
    var complete = sstate && sstate.complete;
    var unlocked = !sstate || sstate.unlocked;
    var current = currentStage() === stage.number;
    var details = el("details", {
      class: "ch-stage" + (complete ? " ch-done" : "") + (unlocked ? "" : " ch-locked") + (current ? " ch-current" : ""),
      id: "stage-" + stage.number,
      "data-stage": String(stage.number),
    });
    var open = state.open.hasOwnProperty(stage.number) ? state.open[stage.number] : current;
    if (open) details.open = true;
    details.addEventListener("toggle", function () {
      state.open[stage.number] = details.open;
    });
    var summary = el("summary");
    summary.appendChild(el("span", { class: "ch-stage-num" }, String(stage.number)));
    summary.appendChild(el("span", { class: "ch-stage-title" }, stage.title));
    var badge = complete ? "done" : unlocked ? (current ? "current" : "") : "locked";
    if (badge) summary.appendChild(el("span", { class: "ch-badge ch-badge-" + badge }, badge));
    details.appendChild(summary);
    if (stage.description) details.appendChild(el("p", { class: "ch-stage-desc" }, stage.description));
    if (!unlocked && stage.requires && stage.requires.length) {
      details.appendChild(el("p", { class: "ch-hint" }, "Complete stage " + stage.requires.join(", ") + " first."));
    }
    stage.concepts.forEach(function (concept, i) {
      var cstate = sstate && sstate.concepts ? sstate.concepts[i] : null;
      var sec = el("section", { class: "ch-concept" + (cstate && cstate.done ? " ch-done" : ""), "data-concept-id": concept.id });
      var h = el("h3", { class: "ch-concept-title" }, concept.title);
      if (concept.level) h.appendChild(el("span", { class: "ch-level" }, concept.level));
      sec.appendChild(h);
      sec.appendChild(rich("div", "ch-content", concept.content_html));
      if (concept.key_ideas && concept.key_ideas.length) {
        var ideas = el("div", { class: "ch-key-ideas" });
        ideas.appendChild(el("h4", { class: "ch-key-ideas-title" }, "Key ideas"));
        var ul = el("ul");
        concept.key_ideas.forEach(function (k) {
          ul.appendChild(el("li", null, k));
        });
        ideas.appendChild(ul);
        sec.appendChild(ideas);
      }
      if (concept.paper_ref) {
        var cite = el("p", { class: "ch-paper-ref" });
        cite.appendChild(el("span", { class: "ch-paper-ref-label" }, "Source: "));
        cite.appendChild(el("cite", null, concept.paper_ref));
        sec.appendChild(cite);
      }
      stage.quizzes.forEach(function (quiz) {
        if (quiz.concept_id === concept.id) sec.appendChild(renderQuiz(quiz, stage, sstate));
      });
      details.appendChild(sec);
    });
    stage.quizzes.forEach(function (quiz) {
      if (!quiz.concept_id) details.appendChild(renderQuiz(quiz, stage, sstate));
    });
    return details;
  }

  /* ------------------------------------------------------ concept graph */

  var SVG_NS = "http://www.w3.org/2000/svg";
  var GRAPH = { width: 316, nodeW: 96, nodeH: 30, gapX: 14, gapY: 30, perRow: 3, pad: 6 };

  function svg(tag, attrs, text) {
    var node = document.createElementNS(SVG_NS, tag);
    Object.keys(attrs || {}).forEach(function (k) {
      node.setAttribute(k, String(attrs[k]));
    });
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }

  /* Concepts, their prerequisite arrows and which are done, from the course and progress. */
  function graphModel() {
    var nodes = [];
    var byId = {};
    state.course.stages.forEach(function (stage) {
      var sstate = stageState(stage.number);
      stage.concepts.forEach(function (concept, i) {
        if (byId[concept.id]) return;
        var cstate = sstate && sstate.concepts ? sstate.concepts[i] : null;
        var node = { id: concept.id, title: concept.title, stage: stage.number, done: !!(cstate && cstate.done), prereqs: [] };
        byId[concept.id] = node;
        nodes.push(node);
      });
    });
    var edges = [];
    state.course.stages.forEach(function (stage) {
      stage.concepts.forEach(function (concept) {
        (concept.prerequisites || []).forEach(function (pre) {
          if (byId[pre] && pre !== concept.id && byId[concept.id].prereqs.indexOf(pre) === -1) {
            byId[concept.id].prereqs.push(pre);
            edges.push({ from: pre, to: concept.id });
          }
        });
      });
    });
    // layer = longest prerequisite chain below a concept (bounded: a cycle cannot loop)
    nodes.forEach(function (n) {
      n.layer = 0;
    });
    for (var round = 0; round < nodes.length; round++) {
      var changed = false;
      edges.forEach(function (e) {
        var want = byId[e.from].layer + 1;
        if (byId[e.to].layer < want && want < nodes.length) {
          byId[e.to].layer = want;
          changed = true;
        }
      });
      if (!changed) break;
    }
    return { nodes: nodes, edges: edges, byId: byId };
  }

  /* Place nodes: one band per layer, at most GRAPH.perRow nodes a row (the panel is narrow). */
  function layout(model) {
    var layers = [];
    model.nodes.forEach(function (n) {
      (layers[n.layer] = layers[n.layer] || []).push(n);
    });
    var y = GRAPH.pad;
    layers.forEach(function (layer) {
      if (!layer) return;
      for (var start = 0; start < layer.length; start += GRAPH.perRow) {
        var row = layer.slice(start, start + GRAPH.perRow);
        var rowW = row.length * GRAPH.nodeW + (row.length - 1) * GRAPH.gapX;
        var x = (GRAPH.width - rowW) / 2;
        row.forEach(function (n, i) {
          n.x = x + i * (GRAPH.nodeW + GRAPH.gapX);
          n.y = y;
        });
        y += GRAPH.nodeH + GRAPH.gapY;
      }
    });
    return y - GRAPH.gapY + GRAPH.pad;
  }

  function shorten(text, max) {
    text = String(text || "");
    return text.length > max ? text.slice(0, max - 1) + "…" : text;
  }

  function openConcept(node) {
    state.open[node.stage] = true;
    renderStages();
    var target = stagePanel.querySelector('[data-concept-id="' + (window.CSS && CSS.escape ? CSS.escape(node.id) : node.id) + '"]');
    if (target) target.scrollIntoView({ block: "start" });
  }

  function renderGraph() {
    var model = graphModel();
    if (model.nodes.length < 2) return null;
    var height = layout(model);
    var done = model.nodes.filter(function (n) {
      return n.done;
    }).length;
    var box = el("details", { class: "ch-graph", id: "concept-graph" });
    if (state.graphOpen !== false) box.open = true;
    box.addEventListener("toggle", function () {
      state.graphOpen = box.open;
    });
    box.appendChild(el("summary", { class: "ch-graph-title" }, "Concept map · " + done + " of " + model.nodes.length + " done"));
    var pic = svg("svg", {
      class: "ch-graph-svg",
      viewBox: "0 0 " + GRAPH.width + " " + height,
      width: GRAPH.width,
      height: height,
      role: "img",
      "aria-label": "Concept map: " + model.nodes.length + " concepts, " + model.edges.length + " prerequisite arrows, " + done + " done",
    });
    var defs = svg("defs");
    var marker = svg("marker", { id: "ch-arrow", viewBox: "0 0 8 8", refX: 7, refY: 4, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" });
    marker.appendChild(svg("path", { d: "M0,0 L8,4 L0,8 z", class: "ch-arrow-head" }));
    defs.appendChild(marker);
    pic.appendChild(defs);
    model.edges.forEach(function (e) {
      var a = model.byId[e.from];
      var b = model.byId[e.to];
      var x1 = a.x + GRAPH.nodeW / 2;
      var y1 = a.y + GRAPH.nodeH;
      var x2 = b.x + GRAPH.nodeW / 2;
      var y2 = b.y;
      if (b.y <= a.y) {
        // same band (only with a cycle): from the side
        y1 = a.y + GRAPH.nodeH / 2;
        y2 = b.y + GRAPH.nodeH / 2;
      }
      var mid = (y1 + y2) / 2;
      var path = svg("path", {
        class: "ch-edge" + (a.done ? " ch-edge-done" : ""),
        d: "M" + x1 + "," + y1 + " C" + x1 + "," + mid + " " + x2 + "," + mid + " " + x2 + "," + (y2 - 1),
        "marker-end": "url(#ch-arrow)",
        "data-from": e.from,
        "data-to": e.to,
      });
      pic.appendChild(path);
    });
    model.nodes.forEach(function (n) {
      var g = svg("g", {
        class: "ch-node" + (n.done ? " ch-node-done" : ""),
        "data-concept-id": n.id,
        tabindex: 0,
        role: "link",
        transform: "translate(" + n.x + "," + n.y + ")",
      });
      g.appendChild(svg("title", null, n.title + (n.done ? " (done)" : "")));
      g.appendChild(svg("rect", { width: GRAPH.nodeW, height: GRAPH.nodeH, rx: 6, ry: 6 }));
      g.appendChild(svg("text", { x: GRAPH.nodeW / 2, y: GRAPH.nodeH / 2 + 4, "text-anchor": "middle" }, (n.done ? "✓ " : "") + shorten(n.title, n.done ? 13 : 15)));
      g.addEventListener("click", function () {
        openConcept(n);
      });
      g.addEventListener("keydown", function (ev) {
        if (ev.key === "Enter" || ev.key === " ") {
          ev.preventDefault();
          openConcept(n);
        }
      });
      pic.appendChild(g);
    });
    box.appendChild(pic);
    return box;
  }

  function renderStages() {
    var scrollTop = stagePanel.scrollTop;
    stagePanel.textContent = "";
    if (!state.course) {
      stagePanel.appendChild(el("h2", { class: "ch-panel-title" }, draftMode ? "Preview" : "Course"));
      var none = draftMode
        ? "The preview appears once the draft holds a course the checker can load (see the check)."
        : "No course was chosen for this session.";
      stagePanel.appendChild(el("p", { class: "ch-hint", id: "preview-empty" }, state.error || none));
      return;
    }
    var thumb = imageUrl(state.course.thumbnail_url);
    if (thumb) {
      stagePanel.appendChild(el("img", { class: "ch-thumbnail", id: "course-thumbnail", src: thumb, alt: "", referrerpolicy: "no-referrer" }));
    }
    stagePanel.appendChild(el("h2", { class: "ch-panel-title", id: "course-title" }, state.course.title));
    if (state.course.description) stagePanel.appendChild(el("p", { class: "ch-course-desc" }, state.course.description));
    var graph = renderGraph();
    if (graph) stagePanel.appendChild(graph);
    state.course.stages.forEach(function (stage) {
      stagePanel.appendChild(renderStage(stage));
    });
    stagePanel.scrollTop = scrollTop;
  }

  /* ------------------------------------------------------ progress panel */

  function renderProgress() {
    progressPanel.textContent = "";
    progressPanel.appendChild(el("h2", { class: "ch-panel-title" }, "Progress"));
    var p = state.progress;
    if (!state.course || !p) {
      progressPanel.appendChild(el("p", { class: "ch-hint" }, "No progress yet."));
      return;
    }
    var done = p.completed_stages.length;
    progressPanel.appendChild(el("p", { id: "progress-summary", class: "ch-summary" }, done + " of " + p.stage_count + " stages complete"));
    var bar = el("div", { class: "ch-bar", role: "progressbar", "aria-valuemin": "0", "aria-valuemax": String(p.stage_count), "aria-valuenow": String(done) });
    var fill = el("div", { class: "ch-bar-fill" });
    fill.style.width = (p.stage_count ? (100 * done) / p.stage_count : 0) + "%";
    bar.appendChild(fill);
    progressPanel.appendChild(bar);
    if (p.course_complete) {
      progressPanel.appendChild(el("p", { id: "course-complete", class: "ch-complete" }, "Course complete!"));
    } else if (p.resume_stage !== null && p.resume_stage !== undefined) {
      var st = null;
      state.course.stages.forEach(function (s) {
        if (s.number === p.resume_stage) st = s;
      });
      progressPanel.appendChild(el("p", { id: "resume-point", class: "ch-resume" }, "Resume at stage " + p.resume_stage + (st ? ": " + st.title : "")));
    }
    var list = el("ol", { class: "ch-progress-list", id: "progress-list" });
    p.stages.forEach(function (s) {
      var li = el("li", { class: "ch-progress-item", "data-stage": String(s.number) });
      li.appendChild(el("span", { class: "ch-progress-title" }, s.title));
      if (s.method) {
        var how = s.method === "quiz" ? "quiz" : "tutor";
        var label = how === "quiz" ? "✓ passed the quiz" : "★ completed with the tutor";
        if (!s.complete) label += " (not counted)";
        var tag = el("span", { class: "ch-method ch-method-" + how, "data-method": how }, label);
        li.appendChild(tag);
        var when = fmtTime(s.completed_at);
        if (when) li.appendChild(el("time", { class: "ch-when", datetime: s.completed_at }, when));
      } else {
        li.appendChild(el("span", { class: "ch-method ch-method-none" }, s.unlocked ? "not yet" : "locked"));
      }
      list.appendChild(li);
    });
    progressPanel.appendChild(list);
  }

  function render() {
    renderStages();
    if (!draftMode) renderProgress();
  }

  /* ---------------------------------------------------------- behaviour */

  function setProgress(progress) {
    if (!progress) return;
    var previous = state.progress;
    state.progress = progress;
    // a newly completed stage: open the next one
    if (previous && previous.resume_stage !== progress.resume_stage && progress.resume_stage) {
      state.open[progress.resume_stage] = true;
    }
    render();
  }

  function submitAnswer(quiz, answer) {
    state.busy[quiz.id] = true;
    renderStages();
    if (draftMode) {
      judgeDraft(quiz, answer);
      return;
    }
    api("POST", "courses/" + encodeURIComponent(state.courseId) + "/quizzes/" + encodeURIComponent(quiz.id) + "/answer", { answer: answer })
      .then(function (result) {
        state.feedback[quiz.id] = {
          status: result.status === "correct" ? "correct" : result.status === "tutor" ? "tutor" : "wrong",
          message: result.message,
          explanation: result.explanation || null,
        };
        state.busy[quiz.id] = false;
        setProgress(result.progress);
      })
      .catch(function (err) {
        state.busy[quiz.id] = false;
        state.feedback[quiz.id] = { status: "wrong", message: err.message };
        renderStages();
      });
  }

  /* An author's try of a quiz of the draft: judged as a learner's would be, nothing kept. */
  function judgeDraft(quiz, answer) {
    api("POST", "draft/judge", { quiz: quiz.id, answer: answer })
      .then(function (result) {
        state.feedback[quiz.id] = {
          status: result.status === "correct" ? "correct" : result.status === "tutor" ? "tutor" : "wrong",
          message: result.message || (result.correct ? "Correct." : "Not quite."),
          explanation: result.explanation || null,
        };
      })
      .catch(function (err) {
        state.feedback[quiz.id] = { status: "wrong", message: err.message };
      })
      .then(function () {
        state.busy[quiz.id] = false;
        renderStages();
      });
  }

  /* author.js hands in each new preview of the draft (null: the course cannot load). */
  function setPreview(preview) {
    state.course = preview && preview.stages ? preview : null;
    state.courseId = null;
    state.progress = null;
    renderStages();
  }

  function refreshProgress() {
    if (!state.courseId) return;
    api("GET", "courses/" + encodeURIComponent(state.courseId) + "/progress").then(setProgress, function () {});
  }

  var source = null;
  function listen() {
    if (!state.courseId || !window.EventSource) return;
    source = new EventSource(apiUrl + "courses/" + encodeURIComponent(state.courseId) + "/events");
    source.addEventListener("progress", function (ev) {
      try {
        setProgress(JSON.parse(ev.data));
      } catch (e) {
        /* ignore a malformed event */
      }
    });
    source.addEventListener("error", function () {
      // EventSource reconnects by itself; meanwhile poll once so nothing is missed
      setTimeout(refreshProgress, 2000);
    });
  }

  // the terminal saw a tutor marker: the server records it; fetch the result soon
  window.addEventListener("claudehub:marker", function () {
    setTimeout(refreshProgress, 500);
  });

  function load() {
    api("GET", "course")
      .then(function (data) {
        state.courseId = data.course_id;
        state.course = data.course;
        state.progress = data.progress;
        render();
        listen();
      })
      .catch(function (err) {
        state.error = "Course unavailable: " + err.message;
        render();
      });
  }

  window.claudehubPanels = { state: state, refresh: refreshProgress, sanitize: safeFragment, setPreview: setPreview };
  render();
  if (!draftMode) load();
})();
