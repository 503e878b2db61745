// Starts Swagger UI on this service's own document. Paths are relative to the page, so the
// viewer also works behind a proxy that adds a path prefix.
window.ui = SwaggerUIBundle({
  url: "openapi.json",
  dom_id: "#swagger-ui",
  deepLinking: true,
  // The validator badge would send the document to validator.swagger.io.
  validatorUrl: null,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
});
