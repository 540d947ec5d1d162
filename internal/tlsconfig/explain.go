package tlsconfig

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"syscall"
)

// Side is which end of a connection met a failure, for its hint.
type Side int

const (
	// ClientSide is the end that dialed.
	ClientSide Side = iota
	// ServerSide is the end that accepted.
	ServerSide
)

// TLS alert codes (RFC 8446 section 6) that name why a peer refused a
// handshake; crypto/tls exports the type but not the values.
const (
	alertBadCertificate         tls.AlertError = 42
	alertUnsupportedCertificate tls.AlertError = 43
	alertCertificateRevoked     tls.AlertError = 44
	alertCertificateExpired     tls.AlertError = 45
	alertCertificateUnknown     tls.AlertError = 46
	alertUnknownCA              tls.AlertError = 48
	alertCertificateRequired    tls.AlertError = 116
)

// Error is a TLS failure with a sentence saying what it probably means and
// what to check. It wraps the failure.
type Error struct {
	Err  error
	Hint string
}

func (e *Error) Error() string { return e.Err.Error() + " (" + e.Hint + ")" }
func (e *Error) Unwrap() error { return e.Err }

// Explain returns err as an *Error with a hint when it is a TLS failure an
// operator is likely to meet (an unknown CA, an expired certificate, a
// wrong name, a peer that does not speak TLS, a certificate the peer
// refused), seen from side; otherwise it returns err unchanged.
func Explain(side Side, err error) error {
	if err == nil {
		return nil
	}
	var already *Error
	if errors.As(err, &already) {
		return err
	}
	if hint := hintFor(side, err); hint != "" {
		return &Error{Err: err, Hint: hint}
	}
	return err
}

func hintFor(side Side, err error) string {
	var (
		unknownCA x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		hostname  x509.HostnameError
		header    tls.RecordHeaderError
		alert     tls.AlertError
	)
	peerCert, trustFlag := "the server's certificate", "is the CA file right: kvctl --cacert, client.Config.TLS.RootCAs, kvd --peer-trusted-ca-file?"
	if side == ServerSide {
		peerCert, trustFlag = "the client's certificate", "is it signed by the CA in --trusted-ca-file or --peer-trusted-ca-file?"
	}
	switch {
	case errors.As(err, &unknownCA):
		return peerCert + " is signed by a CA this end does not trust; " + trustFlag
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return peerCert + " has expired or is not valid yet: renew it, and check both machines' clocks"
	case errors.As(err, &invalid):
		return peerCert + " cannot be used for this: " + invalid.Error()
	case errors.As(err, &hostname):
		return peerCert + " is not valid for the name dialed: dial a host name or IP address among its SANs, or reissue it with that name"
	case errors.Is(err, ErrNotAllowed):
		return "the certificate is valid but its name is not the one --peer-cert-allowed-cn or --peer-cert-allowed-hostname allows"
	case errors.As(err, &header):
		if side == ServerSide {
			return "the client does not speak TLS: a plaintext client on a TLS port? Clients need https:// endpoints or TLS options"
		}
		return "the server does not speak TLS: use an http:// endpoint, or turn TLS on at the server"
	case errors.As(err, &alert):
		return alertHint(side, alert)
	case remoteAlert(err, &alert):
		return alertHint(side, alert)
	case side == ServerSide && strings.Contains(err.Error(), "didn't provide a certificate"):
		// crypto/tls has no typed error for it.
		return "this port requires a client certificate (--client-cert-auth or --peer-client-cert-auth): the client must present one"
	}
	return ""
}

func alertHint(side Side, a tls.AlertError) string {
	if side == ServerSide {
		return "the client refused this member's certificate: is it signed by the CA clients trust, valid for the name they dial, and unexpired?"
	}
	switch a {
	case alertCertificateRequired:
		return "the server requires a client certificate: give one (kvctl --cert and --key, client.Config.TLS.Certificates)"
	case alertUnknownCA:
		return "the server does not trust the CA that signed this client's certificate"
	case alertCertificateExpired:
		return "the server says this client's certificate has expired"
	case alertBadCertificate, alertCertificateUnknown:
		return "the server refused this client's certificate: wrong CA, expired, or a name it does not allow"
	}
	return "the server refused the TLS handshake"
}

// remoteAlert finds the alert a peer sent to refuse a handshake. crypto/tls
// reports it as a net.OpError "remote error" around its unexported alert
// type, a uint8 holding the alert code.
func remoteAlert(err error, alert *tls.AlertError) bool {
	var op *net.OpError
	if !errors.As(err, &op) || op.Op != "remote error" || op.Err == nil {
		return false
	}
	v := reflect.ValueOf(op.Err)
	if v.Kind() != reflect.Uint8 {
		return false
	}
	*alert = tls.AlertError(v.Uint())
	return true
}

// ClosedBeforeAnswer reports whether err on the first read of a plaintext
// connection means the server hung up without a byte: what a TLS server does
// to a plaintext client.
func ClosedBeforeAnswer(err error) bool {
	var op *net.OpError
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || (errors.As(err, &op) && op.Op == "read")
}

// PlaintextRefused explains a plaintext connection the server closed
// before answering.
func PlaintextRefused(err error) error {
	return &Error{Err: fmt.Errorf("server closed the connection before answering: %w", err),
		Hint: "does it serve TLS? Then use an https:// endpoint or TLS options (kvctl --cacert, client.Config.TLS)"}
}

// CertificateRefused reports whether err, or an error it wraps, is a TLS
// handshake that failed over a certificate: this end refused the peer's
// (signed by an unknown CA, expired, not valid for the name dialed, a name
// that is not allowed) or the peer refused this end's (an alert about the
// certificate, or one required and not given). Unlike a network failure,
// trying again with the same files cannot succeed, so callers that retry
// may give up at once.
func CertificateRefused(err error) bool {
	var (
		unknownCA x509.UnknownAuthorityError
		invalid   x509.CertificateInvalidError
		hostname  x509.HostnameError
		alert     tls.AlertError
	)
	switch {
	case err == nil:
		return false
	case errors.As(err, &unknownCA), errors.As(err, &invalid), errors.As(err, &hostname),
		errors.Is(err, ErrNotAllowed):
		return true
	case errors.As(err, &alert), remoteAlert(err, &alert):
		return certificateAlert(alert)
	}
	return false
}

// certificateAlert reports whether a names a refused certificate.
func certificateAlert(a tls.AlertError) bool {
	switch a {
	case alertBadCertificate, alertUnsupportedCertificate, alertCertificateRevoked,
		alertCertificateExpired, alertCertificateUnknown, alertUnknownCA, alertCertificateRequired:
		return true
	}
	return false
}
