package etcdapi

import (
	"fmt"
	"strconv"
	"strings"
)

// DefaultEtcdVersion is the etcd version Status reports when
// Config.EtcdVersion is empty. Clients decide what to use by it:
// kube-apiserver turns off its watch cache's progress requests below
// 3.5.13. kvd serves 3.6's API (3.7's RangeStream is answered
// Unimplemented), so it says 3.6.
const DefaultEtcdVersion = "3.6.0"

// Config configures the etcd API.
type Config struct {
	// EtcdVersion is the etcd server version Status reports (etcd's
	// semver, "3.y.z" with an optional "-pre" suffix); empty means
	// DefaultEtcdVersion.
	EtcdVersion string
	// ClientTLS and PeerTLS say whether the members serve their client
	// and raft ports with TLS: MemberList's URLs are https:// then, and
	// http:// otherwise. Every member of a cluster makes the same choice.
	ClientTLS, PeerTLS bool
}

// Validate reports what is wrong with c, quoting the bad value. It does
// not change c.
func (c Config) Validate() error {
	if c.EtcdVersion == "" {
		return nil
	}
	if _, err := parseVersion(c.EtcdVersion); err != nil {
		return fmt.Errorf("etcd version %q: %w", c.EtcdVersion, err)
	}
	return nil
}

// etcdVersion is the version Status reports.
func (c Config) etcdVersion() string {
	if c.EtcdVersion == "" {
		return DefaultEtcdVersion
	}
	return c.EtcdVersion
}

// version is an etcd server version.
type version struct{ major, minor, patch int }

// parseVersion reads "3.y.z" or "3.y.z-pre". Only major version 3 is
// accepted: it is the API this package serves, and etcd's clients refuse
// any other.
func parseVersion(s string) (version, error) {
	core, _, _ := strings.Cut(s, "-")
	parts := strings.Split(core, ".")
	if len(parts) != 3 {
		return version{}, fmt.Errorf("want major.minor.patch, such as %s", DefaultEtcdVersion)
	}
	var n [3]int
	for i, p := range parts {
		v, err := strconv.Atoi(p)
		if err != nil || v < 0 || p != strconv.Itoa(v) {
			return version{}, fmt.Errorf("%q is not a version number: want major.minor.patch, such as %s", p, DefaultEtcdVersion)
		}
		n[i] = v
	}
	if n[0] != 3 {
		return version{}, fmt.Errorf("major version %d: kvd serves etcd's v3 API, so it must be 3", n[0])
	}
	return version{n[0], n[1], n[2]}, nil
}

// storageVersion is etcd's storage version for the server version s:
// its major and minor version, as etcd 3.6 reports it ("3.6.0").
func storageVersion(s string) string {
	v, err := parseVersion(s)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%d.%d.0", v.major, v.minor)
}
