// Package console is kvd's web console: a page served by every member under
// /ui/ on its HTTP listener (package observe) that shows the cluster's
// health, live activity charts, the keys with their history, leases, locks
// and elections, and lets an operator create, edit and delete keys.
//
// The page's files are embedded in the binary (plain HTML, CSS and
// JavaScript, no build step, nothing loaded from elsewhere). The page talks
// to a small JSON API under /ui/api/; its handlers do nothing themselves but
// call the member's own gRPC API through kvd's Go client (package client),
// with the logged-in user's token, so that what the console may see and do
// is exactly what the API lets that user see and do:
//
//   - With auth enabled, the page asks for a user and a password; the login
//     handler calls AuthService.Authenticate and keeps the token on the
//     server, behind a random session id in an HttpOnly, SameSite=Strict
//     cookie. The session ends with the token (--auth-token-ttl): the page
//     then asks again. The password is not kept.
//   - Every change is a transaction that compares the key's mod revision
//     with the one the page showed, so a concurrent change is reported as a
//     conflict instead of being overwritten, and each change is logged in
//     the member's log with the user who made it.
//   - Requests that change anything must carry the X-KVD-Console header,
//     which a cross-site form or image cannot send (CSRF), besides the
//     SameSite cookie; Config.ReadOnly refuses them all.
//
// The console costs nothing while nobody has it open: the activity sampler
// runs only while a page is subscribed to it, sessions hold a client only
// while they last, and the cluster view is polled by the page.
package console
