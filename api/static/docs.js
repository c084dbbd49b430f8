// Starts Swagger UI on /docs from the vendored bundle (api/static/vendor), reading this API's
// own /openapi.json. A file of its own, not an inline script, so the page's CSP needs no
// 'unsafe-inline' for scripts.
"use strict";
window.addEventListener("DOMContentLoaded", function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null, // no call to validator.swagger.io
    presets: [SwaggerUIBundle.presets.apis],
    layout: "BaseLayout",
  });
});
