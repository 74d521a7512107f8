/* RegenHeart EDC: small progressive enhancements. Every page works without this script;
   the server validates everything again. Loaded from this server only (no CDN). */
(function () {
  "use strict";

  // Filters that apply as soon as a value is chosen.
  document.querySelectorAll("select[data-autosubmit]").forEach(function (el) {
    el.addEventListener("change", function () { el.form.submit(); });
  });

  // Reason prompt: editing data that were already saved needs a reason for change.
  document.querySelectorAll("form[data-saved='1']").forEach(function (form) {
    var reason = form.querySelector("textarea[name='reason']");
    if (!reason) { return; }
    var row = reason.closest(".field");
    var notice = form.querySelector(".js-reason-needed");
    var inputs = Array.prototype.filter.call(form.elements, function (el) {
      return el.name && (el.name.indexOf("f_") === 0 || el.name === "visit_date");
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
        return el.name && (el.name.indexOf("f_") === 0 || el.name === "visit_date" || el.name === "reason") &&
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
