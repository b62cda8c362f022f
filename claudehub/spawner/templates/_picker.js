// Search and language filter for the course cards (progressive enhancement: the form
// works without this script, every card shown). Filtering hides cards; it never changes
// what is posted, and a hidden card that was chosen stays chosen.
(function () {
  "use strict";
  var tools = document.getElementById("claudehub-tools");
  var search = document.getElementById("claudehub-search");
  var language = document.getElementById("claudehub-language");
  var count = document.getElementById("claudehub-count");
  var none = document.getElementById("claudehub-none");
  var cards = Array.prototype.slice.call(document.querySelectorAll("#claudehub-cards > li"));
  if (!tools || !search) return;
  tools.hidden = false;
  // what the search box matches: the card's own text (title, description, authors,
  // organisation, language), read once
  var texts = cards.map(function (card) { return card.textContent.toLowerCase(); });
  function apply() {
    var words = search.value.toLowerCase().split(/\s+/).filter(Boolean);
    var lang = language ? language.value : "";
    var shown = 0;
    cards.forEach(function (card, i) {
      var text = texts[i];
      var match = (!lang || card.getAttribute("data-lang") === lang) &&
        words.every(function (w) { return text.indexOf(w) !== -1; });
      card.hidden = !match;
      if (match) shown += 1;
    });
    none.hidden = shown !== 0;
    count.textContent = shown === cards.length ? cards.length + " courses" :
      shown + " of " + cards.length + " courses shown";
  }
  search.addEventListener("input", apply);
  if (language) language.addEventListener("change", apply);
  apply();
})();
