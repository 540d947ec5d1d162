package compose_test

import (
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// composeService is the part of a compose service these tests look at.
type composeService struct {
	Image           string            `yaml:"image"`
	Hostname        string            `yaml:"hostname"`
	Restart         string            `yaml:"restart"`
	StopGracePeriod string            `yaml:"stop_grace_period"`
	Environment     map[string]string `yaml:"environment"`
	Volumes         []string          `yaml:"volumes"`
	Ports           []string          `yaml:"ports"`
	Networks        []string          `yaml:"networks"`
	Entrypoint      []string          `yaml:"entrypoint"`
	Command         []string          `yaml:"command"`
	DependsOn       map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
}

// tlsDir is where the members mount the certs volume.
const tlsDir = "/etc/kvd/tls"

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Networks map[string]any            `yaml:"networks"`
	Volumes  map[string]any            `yaml:"volumes"`
}

func loadComposeFile(t *testing.T) composeFile {
	t.Helper()
	b, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f composeFile
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return f
}

// interpolate applies compose's ${VAR:-default} with no variables set.
func interpolate(s string) string {
	return regexp.MustCompile(`\$\{[A-Z0-9_]+:-([^}]*)\}`).ReplaceAllString(s, "$1")
}

// members returns the services that run a member (those with KVD_NAME),
// and the others.
func (f composeFile) members() (members, others map[string]composeService) {
	members, others = map[string]composeService{}, map[string]composeService{}
	for name, s := range f.Services {
		if _, ok := s.Environment["KVD_NAME"]; ok {
			members[name] = s
		} else {
			others[name] = s
		}
	}
	return members, others
}

// TestComposeFile checks the invariants of compose.yaml without Docker: an
// odd number of members that name each other consistently, a named volume
// of its own for each, ports published on 127.0.0.1 only, a stop grace
// period longer than kvd's shutdown timeout, and mutual TLS on the API and
// raft with certificates from the certs service (TestComposeTLS).
func TestComposeFile(t *testing.T) {
	f := loadComposeFile(t)
	members, others := f.members()
	n := len(members)
	if n < 3 || n%2 == 0 {
		t.Fatalf("%d member services: want an odd number, at least 3", n)
	}
	for name := range others {
		if name != "certs" {
			t.Errorf("service %s runs no member (no KVD_NAME) and is not the certs service", name)
		}
	}
	var founders []string
	for name := range members {
		founders = append(founders, fmt.Sprintf("%s=%s:7380", name, name))
	}
	hostPorts := map[string]string{}
	volumes := map[string]string{}
	for name, s := range members {
		t.Run(name, func(t *testing.T) {
			if got := interpolate(s.Image); got != "kvd:dev" {
				t.Errorf("image %q (default %q), want kvd:dev", s.Image, got)
			}
			if s.Hostname != name {
				t.Errorf("hostname %q, want the service name", s.Hostname)
			}
			env := s.Environment
			for k, want := range map[string]string{
				"KVD_NAME":                  name,
				"KVD_ADVERTISE_CLIENT_ADDR": name + ":7379",
				"KVD_ADVERTISE_RAFT_ADDR":   name + ":7380",
			} {
				if env[k] != want {
					t.Errorf("%s=%q, want %q", k, env[k], want)
				}
			}
			got := strings.Split(env["KVD_INITIAL_CLUSTER"], ",")
			if len(got) != n {
				t.Errorf("KVD_INITIAL_CLUSTER=%q: want all %d members", env["KVD_INITIAL_CLUSTER"], n)
			}
			for _, want := range founders {
				if !slices.Contains(got, want) {
					t.Errorf("KVD_INITIAL_CLUSTER=%q lacks %q", env["KVD_INITIAL_CLUSTER"], want)
				}
			}
			if env["KVD_JOIN"] == "" {
				t.Error("KVD_JOIN is unset: a replaced member could not join")
			}

			if len(s.Volumes) != 2 || s.Volumes[1] != "certs:"+tlsDir+":ro" {
				t.Fatalf("volumes %q: want two, the data dir and certs:%s:ro", s.Volumes, tlsDir)
			}
			vol, path, _ := strings.Cut(s.Volumes[0], ":")
			if path != "/var/lib/kvd" {
				t.Errorf("volume %q: want it mounted at /var/lib/kvd", s.Volumes[0])
			}
			if _, ok := f.Volumes[vol]; !ok {
				t.Errorf("volume %q is not a named volume declared under volumes:", vol)
			}
			if other, dup := volumes[vol]; dup {
				t.Errorf("volume %q is shared with %s", vol, other)
			}
			volumes[vol] = name

			if len(s.Ports) == 0 {
				t.Error("no published ports")
			}
			for _, p := range s.Ports {
				p = interpolate(p)
				if !strings.HasPrefix(p, "127.0.0.1:") {
					t.Errorf("port %q is published beyond 127.0.0.1", p)
				}
				parts := strings.Split(p, ":")
				if len(parts) != 3 {
					t.Errorf("port %q: want 127.0.0.1:HOST:CONTAINER", p)
					continue
				}
				if parts[2] == "7380" {
					t.Errorf("port %q publishes raft, which only members should reach", p)
				}
				if other, dup := hostPorts[parts[1]]; dup {
					t.Errorf("host port %s is published by %s too", parts[1], other)
				}
				hostPorts[parts[1]] = name
			}

			grace, err := time.ParseDuration(s.StopGracePeriod)
			if err != nil {
				t.Fatalf("stop_grace_period %q: %v", s.StopGracePeriod, err)
			}
			shutdown := 10 * time.Second // kvd's default
			if v := env["KVD_SHUTDOWN_TIMEOUT"]; v != "" {
				if shutdown, err = time.ParseDuration(v); err != nil {
					t.Fatalf("KVD_SHUTDOWN_TIMEOUT=%q: %v", v, err)
				}
			}
			if grace < shutdown+5*time.Second {
				t.Errorf("stop_grace_period %s leaves no time to hand over leadership after the %s shutdown timeout", grace, shutdown)
			}
			if s.Restart == "" || s.Restart == "no" {
				t.Errorf("restart %q: want a member to come back after a crash", s.Restart)
			}
		})
	}
}

// TestComposeTLS checks that every member of compose.yaml runs mutual TLS
// on its API and on raft with its own certificates, which the certs
// service makes (with `kvdutil certs` for exactly these members) before any
// member starts, and that the image's health check (kvctl in the container)
// has the client certificate it needs.
func TestComposeTLS(t *testing.T) {
	f := loadComposeFile(t)
	members, others := f.members()
	certs, ok := others["certs"]
	if !ok {
		t.Fatal("no certs service: who makes the certificates?")
	}
	var names []string
	for name := range members {
		names = append(names, name)
	}
	slices.Sort(names)
	wantCmd := []string{"certs", "--dir", tlsDir, "--members", strings.Join(names, ",")}
	if !slices.Equal(certs.Entrypoint, []string{"/usr/local/bin/kvdutil"}) || !slices.Equal(certs.Command, wantCmd) {
		t.Errorf("certs service runs %q %q, want kvdutil %q", certs.Entrypoint, certs.Command, wantCmd)
	}
	if !slices.Equal(certs.Volumes, []string{"certs:" + tlsDir}) {
		t.Errorf("certs service volumes %q, want certs:%s", certs.Volumes, tlsDir)
	}
	if _, ok := f.Volumes["certs"]; !ok {
		t.Error("volume certs is not declared under volumes:")
	}
	if certs.Restart != "" && certs.Restart != "no" {
		t.Errorf("certs service restart %q: it runs once", certs.Restart)
	}
	for _, name := range names {
		s := members[name]
		t.Run(name, func(t *testing.T) {
			if got := s.DependsOn["certs"].Condition; got != "service_completed_successfully" {
				t.Errorf("depends_on certs with condition %q, want service_completed_successfully: a member must not start before its certificates exist", got)
			}
			for k, want := range map[string]string{
				"KVD_CERT_FILE":             tlsDir + "/" + name + ".crt",
				"KVD_KEY_FILE":              tlsDir + "/" + name + ".key",
				"KVD_TRUSTED_CA_FILE":       tlsDir + "/ca.crt",
				"KVD_CLIENT_CERT_AUTH":      "true",
				"KVD_PEER_CERT_FILE":        tlsDir + "/" + name + "-peer.crt",
				"KVD_PEER_KEY_FILE":         tlsDir + "/" + name + "-peer.key",
				"KVD_PEER_TRUSTED_CA_FILE":  tlsDir + "/ca.crt",
				"KVD_PEER_CLIENT_CERT_AUTH": "true",
				"KVCTL_CACERT":              tlsDir + "/ca.crt",
				"KVCTL_CERT":                tlsDir + "/client.crt",
				"KVCTL_KEY":                 tlsDir + "/client.key",
			} {
				if got := s.Environment[k]; got != want {
					t.Errorf("%s=%q, want %q", k, got, want)
				}
			}
			for k, v := range s.Environment {
				if strings.HasPrefix(k, "KVD_") && strings.HasSuffix(k, "_FILE") && !strings.HasPrefix(v, tlsDir+"/") {
					t.Errorf("%s=%q is not in the certs volume %s", k, v, tlsDir)
				}
			}
		})
	}
}
