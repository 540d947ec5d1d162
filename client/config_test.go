package client

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		wantErr string // empty: valid
	}{
		{"one endpoint", Config{Endpoints: []string{"127.0.0.1:7379"}}, ""},
		{"defaults", DefaultConfig("a:1", "b:2"), ""},
		{"hostname", Config{Endpoints: []string{"localhost:7379"}}, ""},
		{"ipv6", Config{Endpoints: []string{"[::1]:7379"}}, ""},
		{"no endpoints", Config{}, "no endpoints"},
		{"empty endpoint", Config{Endpoints: []string{""}}, "empty endpoint"},
		{"http scheme", Config{Endpoints: []string{"http://a:1", "http://b:1"}}, ""},
		{"https scheme", Config{Endpoints: []string{"https://a:1", "https://b:1"}}, ""},
		{"https with TLS", Config{Endpoints: []string{"https://a:1"}, TLS: &tls.Config{}}, ""},
		{"host:port with TLS", Config{Endpoints: []string{"a:1"}, TLS: &tls.Config{}}, ""},
		{"other scheme", Config{Endpoints: []string{"unix://a:1"}}, `"unix://a:1": want host:port, https://host:port or http://host:port`},
		{"path", Config{Endpoints: []string{"https://a:1/v3"}}, "without a path"},
		{"mixed schemes", Config{Endpoints: []string{"https://a:1", "http://b:1"}}, "mix https:// and http://"},
		{"http with TLS", Config{Endpoints: []string{"http://a:1"}, TLS: &tls.Config{}}, "http:// endpoints are plaintext but TLS is set"},
		{"same address, two schemes", Config{Endpoints: []string{"https://a:1", "a:1"}}, `"a:1" is listed twice`},
		{"no port", Config{Endpoints: []string{"a"}}, `endpoint "a": want host:port`},
		{"no host", Config{Endpoints: []string{":1"}}, `endpoint ":1": want host:port`},
		{"duplicate", Config{Endpoints: []string{"a:1", "a:1"}}, `"a:1" is listed twice`},
		{"negative dial timeout", Config{Endpoints: []string{"a:1"}, DialTimeout: -time.Second}, "DialTimeout -1s is negative"},
		{"negative backoff", Config{Endpoints: []string{"a:1"}, RetryBackoff: -1}, "RetryBackoff -1ns is negative"},
		{"max below base", Config{Endpoints: []string{"a:1"}, RetryBackoff: time.Second, MaxRetryBackoff: time.Millisecond},
			"MaxRetryBackoff 1ms is less than RetryBackoff 1s"},
		{"large base, default max", Config{Endpoints: []string{"a:1"}, RetryBackoff: 3 * time.Second}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := strings.Join(tt.cfg.Endpoints, ",")
			err := tt.cfg.Validate()
			if strings.Join(tt.cfg.Endpoints, ",") != before {
				t.Error("Validate changed the config")
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Validate() = %v, want an error containing %q", err, tt.wantErr)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Validate() = %v, want it to wrap ErrInvalidConfig", err)
			}
			if _, err := New(tt.cfg); err == nil {
				t.Error("New accepted an invalid config")
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	got := Config{Endpoints: []string{"a:1"}}.withDefaults()
	if got.DialTimeout != DefaultDialTimeout || got.RetryBackoff != DefaultRetryBackoff || got.MaxRetryBackoff != DefaultMaxRetryBackoff {
		t.Errorf("withDefaults() = %+v", got)
	}
}
