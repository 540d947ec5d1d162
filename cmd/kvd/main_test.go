package main

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/kvd-io/kvd/server"
)

func TestFlagsEnvironmentAndDefaults(t *testing.T) {
	cases := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(t *testing.T, o *options)
	}{
		{"defaults start a single local member", nil, nil, func(t *testing.T, o *options) {
			d := server.DefaultConfig()
			if o.cfg.ClientAddr != "127.0.0.1:7379" || o.cfg.RaftAddr != "127.0.0.1:7380" || o.cfg.DataDir != "kvd-data" || o.cfg.EtcdVersion != "3.6.0" ||
				o.cfg.MaxRequestBytes != d.MaxRequestBytes || len(o.cfg.InitialCluster) != 0 || o.cfg.Name == "" {
				t.Fatalf("unexpected defaults: %+v", o.cfg)
			}
			if err := o.cfg.Validate(); err != nil {
				t.Fatalf("defaults do not validate: %v", err)
			}
		}},
		{"environment fills flags", nil, map[string]string{"KVD_NAME": "n9", "KVD_CLIENT_ADDR": "127.0.0.1:9999", "KVD_MAX_REQUEST_BYTES": "1024"}, func(t *testing.T, o *options) {
			if o.cfg.Name != "n9" || o.cfg.ClientAddr != "127.0.0.1:9999" || o.cfg.MaxRequestBytes != 1024 {
				t.Fatalf("environment not applied: %+v", o.cfg)
			}
		}},
		{"flag beats environment", []string{"--name", "fromflag"}, map[string]string{"KVD_NAME": "fromenv"}, func(t *testing.T, o *options) {
			if o.cfg.Name != "fromflag" {
				t.Fatalf("name = %q, want the flag's", o.cfg.Name)
			}
		}},
		{"initial cluster parsed", []string{"--name", "a", "--initial-cluster", "a=127.0.0.1:1,b=127.0.0.1:2"}, nil, func(t *testing.T, o *options) {
			want := []server.Peer{{Name: "a", RaftAddr: "127.0.0.1:1"}, {Name: "b", RaftAddr: "127.0.0.1:2"}}
			if len(o.cfg.InitialCluster) != 2 || o.cfg.InitialCluster[0] != want[0] || o.cfg.InitialCluster[1] != want[1] {
				t.Fatalf("initial cluster = %+v", o.cfg.InitialCluster)
			}
		}},
		{"etcd version", []string{"--etcd-version", "3.5.13"}, nil, func(t *testing.T, o *options) {
			if o.cfg.EtcdVersion != "3.5.13" {
				t.Fatalf("etcd version = %q", o.cfg.EtcdVersion)
			}
		}},
		{"durations from environment", nil, map[string]string{"KVD_REQUEST_TIMEOUT": "7s"}, func(t *testing.T, o *options) {
			if o.cfg.RequestTimeout != 7*time.Second {
				t.Fatalf("request timeout = %s", o.cfg.RequestTimeout)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(tc.args, io.Discard, func(k string) string { return tc.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, o)
		})
	}
}

func TestBadInputIsRefused(t *testing.T) {
	cases := []struct {
		name string
		args []string
		env  map[string]string
	}{
		{"unknown flag", []string{"--nope"}, nil},
		{"stray argument", []string{"extra"}, nil},
		{"bad initial cluster", []string{"--initial-cluster", "a"}, nil},
		{"bad initial cluster address", []string{"--initial-cluster", "a=nohost"}, nil},
		{"bad environment value", nil, map[string]string{"KVD_MAX_REQUEST_BYTES": "lots"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := parseFlags(tc.args, io.Discard, func(k string) string { return tc.env[k] }); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	// Flags that parse but do not make a valid member are refused by Validate.
	for _, args := range [][]string{
		{"--name", "a", "--initial-cluster", "b=127.0.0.1:1"},
		{"--client-addr", "nope"},
		{"--max-request-bytes", "0"},
		{"--advertise-client-addr", "0.0.0.0:7379"},
		{"--etcd-version", "4.0.0"},
		{"--etcd-version", "latest"},
	} {
		o, err := parseFlags(args, io.Discard, func(string) string { return "" })
		if err != nil {
			continue
		}
		if err := o.cfg.Validate(); err == nil {
			t.Errorf("%v: accepted", args)
		}
	}
	if _, err := newLogger(io.Discard, "loud", "text"); err == nil {
		t.Error("bad log level accepted")
	}
	if _, err := newLogger(io.Discard, "info", "xml"); err == nil {
		t.Error("bad log format accepted")
	}
}

func TestUnsafeLocalReadsRefusedInReleaseBuild(t *testing.T) {
	o, err := parseFlags([]string{"--unsafe-local-reads"}, io.Discard, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if err := o.cfg.Validate(); err == nil {
		t.Fatal("a release build accepted --unsafe-local-reads")
	}
}

// TestTLSFlags checks that etcd's TLS flag names reach the config and that
// half-given settings are refused with the flags named.
func TestTLSFlags(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want string // in Validate's error; empty: valid
	}{
		{"all given", []string{"--cert-file", "s.crt", "--key-file", "s.key", "--trusted-ca-file", "ca.crt", "--client-cert-auth",
			"--peer-cert-file", "p.crt", "--peer-key-file", "p.key", "--peer-trusted-ca-file", "ca.crt", "--peer-client-cert-auth",
			"--peer-cert-allowed-cn", "kvd-member", "--http-cert-file", "h.crt", "--http-key-file", "h.key"}, ""},
		{"cert without key", []string{"--cert-file", "s.crt"}, `--cert-file "s.crt" needs --key-file`},
		{"key without cert", []string{"--key-file", "s.key"}, `--key-file "s.key" needs --cert-file`},
		{"peer cert without key", []string{"--peer-cert-file", "p.crt"}, `--peer-cert-file "p.crt" needs --peer-key-file`},
		{"http key without cert", []string{"--http-key-file", "h.key"}, `--http-key-file "h.key" needs --http-cert-file`},
		{"client cert auth without CA", []string{"--cert-file", "s.crt", "--key-file", "s.key", "--client-cert-auth"}, "--client-cert-auth needs --trusted-ca-file"},
		{"CA without a certificate", []string{"--trusted-ca-file", "ca.crt"}, "need --cert-file and --key-file"},
		{"allowed CN without peer client cert auth", []string{"--peer-cert-file", "p.crt", "--peer-key-file", "p.key", "--peer-trusted-ca-file", "ca.crt",
			"--peer-cert-allowed-cn", "x"}, "need --peer-client-cert-auth"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseFlags(tc.args, io.Discard, func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			err = o.cfg.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				c := o.cfg
				if c.ClientTLS != (server.TLSConfig{CertFile: "s.crt", KeyFile: "s.key", TrustedCAFile: "ca.crt", ClientCertAuth: true}) ||
					c.PeerTLS != (server.TLSConfig{CertFile: "p.crt", KeyFile: "p.key", TrustedCAFile: "ca.crt", ClientCertAuth: true, AllowedCN: "kvd-member"}) ||
					c.HTTPTLS != (server.TLSConfig{CertFile: "h.crt", KeyFile: "h.key"}) {
					t.Fatalf("flags not applied: %+v %+v %+v", c.ClientTLS, c.PeerTLS, c.HTTPTLS)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate = %v, want it to say %q", err, tc.want)
			}
		})
	}
}

func TestUnsafeWatchDropRefusedInReleaseBuild(t *testing.T) {
	o, err := parseFlags([]string{"--unsafe-watch-drop-every=10"}, io.Discard, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if err := o.cfg.Validate(); err == nil || !strings.Contains(err.Error(), "kvd_unsafe") {
		t.Fatalf("a release build accepted --unsafe-watch-drop-every: %v", err)
	}
}

func TestUnsafeEarlyLeaseExpiryRefusedInReleaseBuild(t *testing.T) {
	o, err := parseFlags([]string{"--unsafe-early-lease-expiry"}, io.Discard, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if err := o.cfg.Validate(); err == nil {
		t.Fatal("a release build accepted --unsafe-early-lease-expiry")
	}
}
