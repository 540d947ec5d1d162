package auth

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Tokens are JWTs (RFC 7519) signed with HMAC-SHA256 (HS256): any member
// holding the key verifies one without asking another. The key is the
// file of --auth-token-key-file when members have one (the same on every
// member), otherwise the cluster's secret drawn when auth was first
// enabled and replicated with the auth state.

// DefaultTokenTTL is how long a token lasts, as etcd's --auth-token-ttl.
const DefaultTokenTTL = 5 * time.Minute

// minKeyLen is the shortest signing key accepted: HS256 wants at least the
// hash's 32 bytes.
const minKeyLen = 32

// Claims are what a token says.
type Claims struct {
	// User is the authenticated user.
	User string `json:"username"`
	// Revision is the auth revision the token was issued at.
	Revision uint64 `json:"revision"`
	// IssuedAt and Expiry are Unix seconds.
	IssuedAt int64 `json:"iat"`
	Expiry   int64 `json:"exp"`
}

var jwtHeader = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// ReadKeyFile reads an HS256 key of at least 32 bytes from a file.
func ReadKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("auth: token key: %w", err)
	}
	if len(b) < minKeyLen {
		return nil, fmt.Errorf("auth: token key %s has %d bytes; want at least %d (e.g. head -c 32 /dev/urandom > %s)", path, len(b), minKeyLen, path)
	}
	return b, nil
}

// Sign returns a token for c signed with key.
func Sign(key []byte, c Claims) (string, error) {
	if len(key) == 0 {
		return "", errors.New("auth: no token key")
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("auth: encode token: %w", err)
	}
	signed := jwtHeader + "." + base64.RawURLEncoding.EncodeToString(payload)
	return signed + "." + base64.RawURLEncoding.EncodeToString(mac(key, signed)), nil
}

func mac(key []byte, s string) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(s))
	return m.Sum(nil)
}

// Verify checks a token's signature and expiry as of now and returns its
// claims: ErrInvalidToken or ErrTokenExpired.
func Verify(key []byte, token string, now time.Time) (Claims, error) {
	var c Claims
	parts := strings.Split(token, ".")
	if len(parts) != 3 || len(key) == 0 {
		return c, ErrInvalidToken
	}
	if parts[0] != jwtHeader {
		return c, fmt.Errorf("%w: not an HS256 token", ErrInvalidToken)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, mac(key, parts[0]+"."+parts[1])) {
		return c, fmt.Errorf("%w: bad signature", ErrInvalidToken)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return c, ErrInvalidToken
	}
	if err := json.Unmarshal(payload, &c); err != nil || c.User == "" {
		return c, fmt.Errorf("%w: bad claims", ErrInvalidToken)
	}
	if now.Unix() >= c.Expiry {
		return c, ErrTokenExpired
	}
	return c, nil
}

// MemberToken is what a member sends to prove it is one when no peer
// certificate does: an HMAC of a fixed label with the cluster's secret,
// which only members hold.
func MemberToken(secret []byte) string {
	if len(secret) == 0 {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString(mac(secret, "kvd member v1"))
}

// CheckMemberToken reports whether token is the member token of secret.
func CheckMemberToken(secret []byte, token string) bool {
	want := MemberToken(secret)
	return want != "" && hmac.Equal([]byte(want), []byte(token))
}
