// Package tlsconfig builds the *tls.Config of kvd's listeners and of the
// connections members open to each other, from PEM files on disk: a
// certificate, its key, and trusted CAs.
//
// The files are reloaded when they change, so that certificates rotate
// without a restart: a handshake looks at the files' size and modification
// time at most once per Config.CheckInterval (a stat per file, no read) and
// reads them again only when one changed. A handshake uses whatever was
// loaded last; established connections are not touched, so rotation drops
// none. A file that fails to load (half written, a key that does not match
// its certificate yet) leaves the previous ones in use until a later check
// succeeds.
//
// Every config has TLS 1.2 as its minimum version and Go's default cipher
// suites.
package tlsconfig
