// Starts Swagger UI on /docs. A file, not an inline script, so that the page's
// Content-Security-Policy can say script-src 'self' and nothing more.
window.addEventListener("DOMContentLoaded", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    displayOperationId: true,  // readable ids (listRuns, claimWorkItem): worth showing
    layout: "BaseLayout",
    presets: [SwaggerUIBundle.presets.apis],
  });
});
