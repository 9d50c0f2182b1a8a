// Ends the dashboard session: ZenML's logout (GET) deletes its cookie; the dashboard's flag goes
// with it. Then back to the sign-in page.
(function () {
  function done() {
    localStorage.removeItem('isAuthenticated');
    location.replace('/authz/login?signed_out=1');
  }
  fetch('/api/v1/logout', {credentials: 'same-origin'}).then(done, done);
})();
