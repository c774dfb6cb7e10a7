// Live fragments: the server pushes each fragment a page shows (rendered
// and escaped by html/template) when it changes. A page marks them with
// data-live-event; one event stream serves them all.
(function () {
  var els = document.querySelectorAll("[data-live-event]");
  if (!els.length || !window.EventSource) return;
  var names = [];
  for (var i = 0; i < els.length; i++) names.push(els[i].getAttribute("data-live-event"));
  var es = new EventSource("/events?on=" + encodeURIComponent(names.join(",")));
  Array.prototype.forEach.call(els, function (el) {
    es.addEventListener(el.getAttribute("data-live-event"), function (e) {
      el.innerHTML = e.data;
      el.setAttribute("data-updated", new Date().toISOString());
    });
  });
})();
