// The API reference: Swagger UI rendering this API's own /openapi.json. The document is fetched
// here (not by URL) so its server can be set to wherever this page is served, stage prefix
// included; "Try it out" then calls this API with the key typed into "Authorize", which Swagger
// UI keeps in the page's memory only (persistAuthorization is off).
"use strict";

(function () {
  var status = document.getElementById("docs-status");
  var base = new URL(".", document.baseURI).href.replace(/\/$/, "");

  function fail(message) {
    status.textContent = message;
    status.className = "mdw-status mdw-error";
  }

  fetch("openapi.json", { headers: { Accept: "application/json" } })
    .then(function (response) {
      if (!response.ok) {
        throw new Error("GET /openapi.json answered " + response.status);
      }
      return response.json();
    })
    .then(function (spec) {
      spec.servers = [{ url: base, description: "this server" }];
      window.SwaggerUIBundle({
        spec: spec,
        dom_id: "#swagger-ui",
        deepLinking: true,
        persistAuthorization: false,
        displayOperationId: false,
        defaultModelsExpandDepth: 1,
        docExpansion: "list",
        presets: [window.SwaggerUIBundle.presets.apis],
        layout: "BaseLayout",
        onComplete: function () {
          status.textContent = "";
          status.hidden = true;
          document.body.setAttribute("data-docs-ready", "true");
        },
      });
    })
    .catch(function (error) {
      fail("The API document could not be loaded: " + error.message);
    });
})();
