// Served at /authz/dashboard-shim.js; the reverse proxy adds it to the ZenML dashboard's
// index.html (deploy/nginx/zenml-dashboard.conf). It closes three gaps of the dashboard bundled
// with ZenML 0.98 under ZENML_SERVER_AUTH_SCHEME=EXTERNAL:
// 1. signed out, the dashboard navigates (client side) to its password page /login, which
//    cannot work under EXTERNAL: go to the sidecar's sign-in page instead, keeping ?redirect=;
// 2. its first-login survey saves with PUT /api/v1/current-user, which EXTERNAL removes (405):
//    the survey is shown as finished;
// 3. GET /api/v1/settings is not served when ZENML_SERVER_EXTERNAL_SERVER_ID is set (404), and
//    without it the user menu (and its Logout) is not drawn: a neutral answer stands in.
(function () {
  function check() {
    if (location.pathname === '/login') location.replace('/authz/login' + location.search);
  }
  ['pushState', 'replaceState'].forEach(function (name) {
    var original = history[name];
    history[name] = function () {
      var result = original.apply(this, arguments);
      check();
      return result;
    };
  });
  window.addEventListener('popstate', check);
  check();
  var originalFetch = window.fetch;
  window.fetch = function (input, init) {
    var url = typeof input === 'string' ? input : input.url;
    var method = ((init && init.method) || (typeof input === 'string' ? 'GET' : input.method) || 'GET').toUpperCase();
    var path = new URL(url, location.href).pathname;
    if (path === '/api/v1/current-user') {
      var asked = method === 'PUT' ? Object.assign({}, init, {method: 'GET', body: undefined}) : init;
      return originalFetch(input, asked).then(function (response) {
        if (!response.ok) return response;
        return response.json().then(function (user) {
          user.metadata = user.metadata || {};
          user.metadata.user_metadata = Object.assign({}, user.metadata.user_metadata,
            {finished_onboarding_survey: true});
          return new Response(JSON.stringify(user), {status: 200, headers: {'Content-Type': 'application/json'}});
        });
      });
    }
    if (path === '/api/v1/settings' && method === 'GET') {
      return originalFetch(input, init).then(function (response) {
        if (response.status !== 404) return response;
        return new Response(JSON.stringify({body: {server_name: 'default', display_announcements: false,
          display_updates: false, active: true, enable_analytics: false}}),
          {status: 200, headers: {'Content-Type': 'application/json'}});
      });
    }
    return originalFetch(input, init);
  };
})();
