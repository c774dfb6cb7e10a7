// Live overview: the server pushes the counts fragment (rendered and
// escaped by html/template) when the hub's node list changes.
(function () {
  var el = document.getElementById("live");
  if (!el || !window.EventSource) return;
  var es = new EventSource(el.getAttribute("data-live"));
  es.addEventListener("overview", function (e) {
    el.innerHTML = e.data;
    el.setAttribute("data-updated", new Date().toISOString());
  });
})();
