package client

import (
	"context"
	"errors"
	"testing"
	"time"
)

// KeepAliveOnce renews on the endpoint's shared stream, opening no stream of
// its own; against a member that predates that (no KV stream, or one that
// refuses renewals), or with UnaryCalls, it renews on a LeaseKeepAlive
// stream. Either way a missing lease fails with ErrLeaseNotFound.
func TestKeepAliveOnceSharesTheStream(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name       string
		setup      func(*fakeServer, *Config)
		onStream   bool
		keepAlives int // LeaseKeepAlive streams opened for the two calls
	}{
		{"current member", func(*fakeServer, *Config) {}, true, 0},
		{"member without streams", func(f *fakeServer, _ *Config) { f.noStream = true }, false, 2},
		{"member without renewals on streams", func(f *fakeServer, _ *Config) { f.noStreamRenew = true }, false, 2},
		{"unary calls", func(_ *fakeServer, c *Config) { c.UnaryCalls = true }, false, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			f := newFake("a", 1)
			cfg := Config{}
			tc.setup(f, &cfg)
			addr, _ := serve(t, f)
			cfg.Endpoints = []string{addr}
			cli, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()

			sent := time.Now()
			resp, err := cli.KeepAliveOnce(ctx, 7)
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetId() != 7 || resp.GetTtl() != fakeLeaseTTL || resp.GetHeader().GetMemberId() != 1 {
				t.Errorf("renewal: %v, want lease 7 renewed for %d s by member 1", resp, fakeLeaseTTL)
			}
			if d := resp.Deadline.Sub(sent); d < fakeLeaseTTL*time.Second || d > fakeLeaseTTL*time.Second+time.Second {
				t.Errorf("deadline %v after the call, want about %d s", d, fakeLeaseTTL)
			}
			if _, err := cli.KeepAliveOnce(ctx, -1); !errors.Is(err, ErrLeaseNotFound) {
				t.Errorf("renewal of a missing lease: %v, want ErrLeaseNotFound", err)
			}
			renewedOnStream := f.count("StreamLeaseRenew")
			if tc.onStream && renewedOnStream != 2 || !tc.onStream && renewedOnStream != 0 {
				t.Errorf("%d renewals on the shared stream", renewedOnStream)
			}
			if n := f.count("LeaseKeepAlive"); n != tc.keepAlives {
				t.Errorf("%d renewals on LeaseKeepAlive streams, want %d", n, tc.keepAlives)
			}
			// A member that refused a renewal on its stream is not asked
			// again for a while.
			if n := f.count("StreamLeaseRenewRefused"); f.noStreamRenew && n != 1 {
				t.Errorf("the old member refused %d renewals on its stream, want 1 (then none)", n)
			}
		})
	}
}
