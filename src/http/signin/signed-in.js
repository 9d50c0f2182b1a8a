// The ZenML dashboard keeps its own "signed in" flag in this origin's local storage (its login
// page sets it after a password login); the session itself is ZenML's HttpOnly cookie, set by
// the answer that served this page.
(function () {
  var meta = document.querySelector('meta[name="zenml-authz-redirect"]');
  var target = meta ? meta.getAttribute('content') : '/';
  if (!target || target.charAt(0) !== '/' || target.charAt(1) === '/' || target.charAt(1) === '\\') {
    target = '/';
  }
  localStorage.setItem('isAuthenticated', 'true');
  location.replace(target);
})();
