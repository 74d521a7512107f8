/* RegenHeart EDC: small progressive enhancements. Every page works without this script;
   the server validates everything again. Loaded from this server only (no CDN). */
(function () {
  "use strict";

  // Filters that apply as soon as a value is chosen.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (el) {
    el.addEventListener("change", function () { el.form.submit(); });
  });

  // Missing-data codes beside visit-form fields (details.missing-ctl). While a code is chosen the field's
  // value inputs are cleared and disabled (what was typed is kept aside and comes back when the code is
  // removed); the reason is marked required for the codes that need one. The toggles stay out of the Tab
  // order between values: Alt+M in a field opens its control (and, from the control, goes back).
  function valueInputs(row) {
    var name = "f_" + row.getAttribute("data-field");
    return Array.prototype.filter.call(row.querySelectorAll("input, select, textarea"), function (el) {
      return el.name === name;
    });
  }
  function syncMissing(ctl, clearReason) {
    var row = ctl.closest(".field");
    var select = ctl.querySelector("select.missing-code");
    var reason = ctl.querySelector("input[name^='missing_reason__']");
    var note = ctl.querySelector(".reason-note");
    var code = select.value;
    var option = select.options[select.selectedIndex];
    var needsReason = !!code && !!option && option.getAttribute("data-reason-required") === "1";
    valueInputs(row).forEach(function (el) {
      if (code && !el.disabled) {
        el.setAttribute("data-kept", el.type === "radio" ? (el.checked ? "1" : "") : el.value);
        if (el.type === "radio") { el.checked = false; } else { el.value = ""; }
        el.disabled = true;
      } else if (!code && el.disabled) {
        el.disabled = false;
        var kept = el.getAttribute("data-kept");
        if (kept !== null) {
          if (el.type === "radio") { el.checked = kept === "1"; } else { el.value = kept; }
          el.removeAttribute("data-kept");
        }
      }
    });
    if (!code && clearReason) { reason.value = ""; }
    if (code && !row.classList.contains("coded")) { ctl.open = true; }  // e.g. a code put back after a log-in
    row.classList.toggle("coded", !!code);
    reason.setAttribute("aria-required", needsReason ? "true" : "false");
    if (!note.hasAttribute("data-default")) { note.setAttribute("data-default", note.textContent); }
    note.textContent = code ? (needsReason ? "(required)" : "(optional)") : note.getAttribute("data-default");
    ctl.querySelector(".missing-sum").textContent = code || "missing";
    ctl.querySelector("summary").setAttribute("aria-label", "Missing-data code for " +
      (row.querySelector(".label label") || { textContent: "" }).textContent.replace("*", "").trim() +
      (code ? ": " + code : ""));
  }
  function firstValueInput(row) {
    var inputs = valueInputs(row).filter(function (el) { return !el.disabled; });
    return inputs.filter(function (el) { return el.checked; })[0] || inputs[0];
  }
  document.querySelectorAll("form").forEach(function (form) {
    var controls = form.querySelectorAll("details.missing-ctl");
    if (!controls.length) { return; }
    controls.forEach(function (ctl) {
      ctl.querySelector("summary").setAttribute("tabindex", "-1");
      syncMissing(ctl, false);
      ctl.addEventListener("keydown", function (event) {
        var row = ctl.closest(".field");
        if (event.key === "Escape" && !ctl.querySelector("select.missing-code").value) {
          ctl.open = false;
          var back = firstValueInput(row);
          if (back) { back.focus(); }
        }
      });
    });
    // any change (also the one dispatched after values are put back): every control follows its select
    form.addEventListener("change", function (event) {
      controls.forEach(function (ctl) { syncMissing(ctl, ctl.contains(event.target)); });
    });
    form.addEventListener("keydown", function (event) {
      if (!event.altKey || event.ctrlKey || event.metaKey || (event.code !== "KeyM" && event.key !== "m")) { return; }
      var row = event.target.closest ? event.target.closest(".field") : null;
      var ctl = row ? row.querySelector("details.missing-ctl") : null;
      if (!ctl) { return; }
      event.preventDefault();
      var select = ctl.querySelector("select.missing-code");
      if (ctl.contains(event.target)) {
        if (!select.value) { ctl.open = false; }
        var back = firstValueInput(row);
        if (back) { back.focus(); }
      } else {
        ctl.open = true;
        select.focus();
      }
    });
  });

  // "Specify" text fields (data-specify-for): shown only while their code field holds an answer that
  // needs one ("Other"), cleared when hidden. Without this script they are simply always shown.
  document.querySelectorAll(".field[data-specify-for]").forEach(function (row) {
    var form = row.closest("form");
    if (!form) { return; }
    var targetName = row.getAttribute("data-specify-for");
    var codes = (row.getAttribute("data-specify-codes") || "").split(" ");
    function answer() {
      var coded = form.querySelector("select[name='missing__" + targetName.slice(2) + "']");
      if (coded && coded.value) { return null; }
      var target = form.elements[targetName];
      return target ? target.value : null;
    }
    function sync(first) {
      var show = codes.indexOf(answer()) >= 0 || (first && row.classList.contains("has-error"));
      if (show === !row.hidden) { return; }
      row.hidden = !show;
      if (show) { return; }
      row.querySelectorAll("input[type=text], textarea").forEach(function (el) { el.value = ""; });
      row.querySelectorAll("select.missing-code").forEach(function (el) { el.value = ""; });
      row.querySelectorAll("details.missing-ctl").forEach(function (ctl) { syncMissing(ctl, true); });
    }
    form.addEventListener("change", function () { sync(false); });
    sync(true);
  });

  // Reason prompt: editing data that were already saved needs a reason for change.
  document.querySelectorAll("form[data-saved='1']").forEach(function (form) {
    var reason = form.querySelector("textarea[name='reason']");
    if (!reason) { return; }
    var row = reason.closest(".field");
    var notice = form.querySelector(".js-reason-needed");
    var inputs = Array.prototype.filter.call(form.elements, function (el) {
      return el.name && (el.name.indexOf("f_") === 0 || el.name.indexOf("missing_") === 0 ||
        el.name === "visit_date");
    });
    var initial = {};
    function valueOf(el) { return (el.type === "radio" || el.type === "checkbox") ? (el.checked ? el.value : null) : el.value; }
    function key(el) { return el.type === "radio" ? el.name + "=" + el.value : el.name; }
    inputs.forEach(function (el) { initial[key(el)] = valueOf(el); });
    function changed() { return inputs.some(function (el) { return valueOf(el) !== initial[key(el)]; }); }
    function update() {
      var needed = changed();
      row.classList.toggle("needed", needed);
      if (needed) { reason.setAttribute("aria-required", "true"); } else { reason.removeAttribute("aria-required"); }
      if (!needed && notice) { notice.hidden = true; }
    }
    form.addEventListener("input", update);
    form.addEventListener("change", update);
    form.addEventListener("submit", function (event) {
      if (changed() && !reason.value.trim()) {
        event.preventDefault();
        if (notice) { notice.hidden = false; }
        row.classList.add("needed");
        reason.focus();
      }
    });
  });

  // Scroll the first field with an error into view.
  var firstError = document.querySelector(".field.has-error");
  if (firstError) { firstError.scrollIntoView({ block: "center" }); }

  // Data-entry forms (data-guard): prompt before leaving with unsaved changes, and keep what was typed
  // across an expired session. On submit the values are kept in this tab's sessionStorage with the
  // version they were typed against; if the session had expired, the log-in brings the user back to this
  // form at the same version and the values are put back (a newer version means the save went through).
  var STORE_PREFIX = "regenheart.entry:";
  var MAX_AGE_MS = 12 * 3600 * 1000;
  function storage() { try { return window.sessionStorage; } catch (e) { return null; } }

  document.querySelectorAll("form[data-guard='1']").forEach(function (form) {
    var key = STORE_PREFIX + form.getAttribute("action");
    var versionInput = form.querySelector("input[name='version']");
    var version = versionInput ? versionInput.value : "0";
    var store = storage();
    function entries() {
      return Array.prototype.filter.call(form.elements, function (el) {
        return el.name && (el.name.indexOf("f_") === 0 || el.name.indexOf("missing_") === 0 ||
          el.name === "visit_date" || el.name === "reason") &&
          el.type !== "hidden" && el.type !== "submit";
      });
    }
    function snapshot() {
      var out = {};
      entries().forEach(function (el) {
        if (el.type === "radio" || el.type === "checkbox") { if (el.checked) { out[el.name] = el.value; } }
        else { out[el.name] = el.value; }
      });
      return out;
    }
    function same(a, b) {
      var names = Object.keys(a).concat(Object.keys(b));
      return names.every(function (n) { return (a[n] || "") === (b[n] || ""); });
    }

    // Restore values typed before an expired session (same form, same version, recent).
    if (store) {
      var saved = null;
      try { saved = JSON.parse(store.getItem(key) || "null"); } catch (e) { saved = null; }
      if (saved && saved.version === version && Date.now() - saved.at < MAX_AGE_MS &&
          form.getAttribute("data-conflict") !== "1" && !document.querySelector(".field.has-error") &&
          !document.querySelector(".flash.ok")) {  // a confirmation means the save went through
        var restored = 0;
        entries().forEach(function (el) {
          if (!(el.name in saved.values)) { return; }
          var value = saved.values[el.name];
          if (el.type === "radio") {
            if ((el.value === value) !== el.checked) { el.checked = el.value === value; restored++; }
          } else if (el.value !== value) { el.value = value; restored++; }
        });
        if (restored) {
          var note = document.createElement("div");
          note.className = "restored";
          note.id = "restored-note";
          note.setAttribute("role", "status");
          note.textContent = "Your entries from before the log-in were put back (not saved yet): check them and save.";
          form.insertBefore(note, form.firstChild);
          form.dispatchEvent(new Event("change"));
        }
      }
      store.removeItem(key);
    }

    var initial = snapshot();
    var submitting = false;
    if (document.getElementById("restored-note") || form.getAttribute("data-conflict") === "1" ||
        document.querySelector(".field.has-error")) {
      initial = {};  // what is in the form was not saved: leaving it should ask
    }
    form.addEventListener("submit", function (event) {
      if (event.defaultPrevented) { return; }  // e.g. the reason prompt stopped it: still on the page
      submitting = true;
      if (store) {
        try { store.setItem(key, JSON.stringify({ version: version, at: Date.now(), values: snapshot() })); }
        catch (e) { /* storage full or disabled: the server still validates and answers */ }
      }
    });
    window.addEventListener("beforeunload", function (event) {
      if (submitting || same(initial, snapshot())) { return; }
      event.preventDefault();
      event.returnValue = "";  // the browser shows its own "leave page?" dialog
    });
  });
})();
