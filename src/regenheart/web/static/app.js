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
})();
