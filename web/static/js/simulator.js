// Call simulator: the keypad types into the field, and new messages are read aloud when asked.
// The page works without this script (type the keys in the field).
(function () {
  "use strict";
  var field = document.getElementById("digits");
  document.querySelectorAll("[data-key]").forEach(function (button) {
    button.addEventListener("click", function () {
      if (field) { field.value += button.getAttribute("data-key"); field.focus(); }
    });
  });
  var toggle = document.getElementById("voix");
  if (!toggle) { return; }
  var canSpeak = "speechSynthesis" in window;
  toggle.checked = canSpeak && window.localStorage.getItem("svi-voix") === "1";
  toggle.disabled = !canSpeak;
  toggle.addEventListener("change", function () {
    window.localStorage.setItem("svi-voix", toggle.checked ? "1" : "0");
  });
  // Read only what this answer added: the messages after the last key the caller typed.
  var lines = Array.prototype.slice.call(document.querySelectorAll("#transcription li"));
  var fresh = [];
  for (var i = lines.length - 1; i >= 0 && !lines[i].classList.contains("svi-end"); i--) {
    if (lines[i].hasAttribute("data-speak")) { fresh.unshift(lines[i].getAttribute("data-speak")); }
  }
  if (toggle.checked && fresh.length) {
    fresh.forEach(function (text) {
      var utterance = new SpeechSynthesisUtterance(text);
      utterance.lang = "fr-FR";
      window.speechSynthesis.speak(utterance);
    });
  }
  if (field) { field.focus(); }
})();
