package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/internal/certgen"
	"github.com/kvd-io/kvd/server"
)

// peerFiles are one member's TLS files.
type peerFiles struct {
	cert, key         string // API
	peerCert, peerKey string // raft, and calls to other members' API
}

// startPeerMember starts one member with mutual TLS on its API and on raft,
// trusting ca on both; allowedCN, when set, is its --peer-cert-allowed-cn.
// It founds a cluster with initial, or joins through join.
func startPeerMember(t *testing.T, name, clientAddr, raftAddr, dataDir string, logs *syncBuffer, ca string, f peerFiles, allowedCN string, initial []server.Peer, join []string) *server.Server {
	t.Helper()
	var logOut io.Writer = logs
	if testing.Verbose() {
		logOut = io.MultiWriter(logs, os.Stderr)
	}
	cfg := server.DefaultConfig()
	cfg.Name = name
	cfg.DataDir = filepath.Join(dataDir, name)
	cfg.ClientAddr = clientAddr
	cfg.RaftAddr = raftAddr
	cfg.InitialCluster = initial
	cfg.Join = join
	// The server adds member=name to every line.
	cfg.Logger = slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg.ClientTLS = server.TLSConfig{CertFile: f.cert, KeyFile: f.key, TrustedCAFile: ca, ClientCertAuth: true}
	cfg.PeerTLS = server.TLSConfig{CertFile: f.peerCert, KeyFile: f.peerKey, TrustedCAFile: ca, ClientCertAuth: true, AllowedCN: allowedCN}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	return srv
}

// logLine returns the first line of logs that holds every one of parts.
func logLine(logs *syncBuffer, parts ...string) (string, bool) {
	for _, line := range strings.Split(logs.String(), "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return line, true
		}
	}
	return "", false
}

// TestPeerCertificateRefused starts three founding members of which the
// third is a stranger: its peer certificate is signed by another CA, or by
// the cluster's CA but with a common name that --peer-cert-allowed-cn does
// not allow. The two others elect a leader and commit writes without it;
// the stranger is never heard (it applies none of the writes and never
// leads), the others log why on their raft listener, and the leader logs
// why it cannot replicate to the stranger. A new member with
// a peer certificate of another CA cannot join either: its MemberAdd call
// is refused at the API's handshake, with the reason in the log.
func TestPeerCertificateRefused(t *testing.T) {
	for _, tt := range []struct {
		name      string
		allowedCN string
		// stranger issues the third member's peer certificate.
		stranger func(good, other *testPKI, hosts []string) (string, string)
		// say is in the line the others log on their raft listener.
		say string
	}{
		{
			name: "peer certificate of another CA",
			stranger: func(_, other *testPKI, hosts []string) (string, string) {
				return other.issue("n3-peer", "n3", certgen.Server|certgen.Client, time.Time{}, hosts...)
			},
			say: "signed by a CA this end does not trust",
		},
		{
			name:      "name not in --peer-cert-allowed-cn",
			allowedCN: "kvd-member",
			stranger: func(good, _ *testPKI, hosts []string) (string, string) {
				return good.issue("n3-peer", "intruder", certgen.Server|certgen.Client, time.Time{}, hosts...)
			},
			say: `client certificate not allowed: common name \"intruder\", want \"kvd-member\"`,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			good, other := newTestPKI(t, "kvd-test-ca"), newTestPKI(t, "other-ca")
			logs := &syncBuffer{}
			names := []string{"n1", "n2", "n3"}
			addrs := freeAddrs(t, 2*len(names))
			var initial []server.Peer
			for i, n := range names {
				initial = append(initial, server.Peer{Name: n, RaftAddr: addrs[2*i+1]})
			}
			hosts := []string{"127.0.0.1", "localhost"}
			peerCN := func(n string) string {
				if tt.allowedCN != "" {
					return tt.allowedCN
				}
				return n
			}
			dataDir := t.TempDir()
			var members []*server.Server
			for i, n := range names {
				var f peerFiles
				f.cert, f.key = good.issue(n, n, certgen.Server|certgen.Client, time.Time{}, hosts...)
				if n == "n3" {
					f.peerCert, f.peerKey = tt.stranger(good, other, hosts)
				} else {
					f.peerCert, f.peerKey = good.issue(n+"-peer", peerCN(n), certgen.Server|certgen.Client, time.Time{}, hosts...)
				}
				members = append(members, startPeerMember(t, n, addrs[2*i], addrs[2*i+1], dataDir, logs, good.caFile(), f, tt.allowedCN, initial, nil))
			}
			n1, n2, n3 := members[0], members[1], members[2]

			// The stranger keeps asking for votes; n1 and n2 refuse its
			// connections and say why.
			for _, m := range []string{"n1", "n2"} {
				eventually(t, 60*time.Second, func() error {
					if _, ok := logLine(logs, "member="+m, "TLS handshake refused", "listener=raft", tt.say); !ok {
						return fmt.Errorf("%s logged no raft refusal saying %s", m, tt.say)
					}
					return nil
				})
			}
			line, _ := logLine(logs, "member=n1", "TLS handshake refused", "listener=raft")
			t.Logf("n1: %s", line)

			// n1 and n2 elect a leader between them and commit writes.
			cf, kf := good.issue("client", "client", certgen.Client, time.Time{})
			cli, err := client.New(client.Config{Endpoints: []string{"https://" + n1.ClientAddr(), "https://" + n2.ClientAddr()},
				TLS: clientTLS(t, good, cf, kf), DialTimeout: 5 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			var rev int64
			for i := range 5 {
				resp, err := cli.Put(ctx, fmt.Sprintf("k%d", i), "v")
				if err != nil {
					t.Fatalf("put without the stranger: %v", err)
				}
				rev = resp.Header.Revision
			}
			// Both good members have applied the writes; the stranger,
			// which the same leader would have replicated them to had it
			// been heard, has none, and does not lead.
			for _, s := range []*server.Server{n1, n2} {
				eventually(t, 30*time.Second, func() error {
					st, err := cli.Status(ctx, s.ClientAddr())
					if err != nil {
						return err
					}
					if st.Header.Revision < rev {
						return fmt.Errorf("%s at revision %d, want %d", s.Name(), st.Header.Revision, rev)
					}
					return nil
				})
			}
			if got := n3.FSM().Revision(); got >= rev {
				t.Errorf("the stranger n3 applied revision %d of %d: it was heard", got, rev)
			}
			if n3.IsLeader() {
				t.Error("the stranger n3 leads")
			}
			for _, s := range []*server.Server{n1, n2} {
				if l := s.Raft().Leader(); l == "" || string(l) == n3.RaftAddr() {
					t.Errorf("%s follows %q, want n1 or n2", s.Name(), l)
				}
			}

			if tt.allowedCN != "" {
				// Nor does the leader replicate to it: dialing n3, it refuses
				// n3's certificate as a server's too.
				eventually(t, 30*time.Second, func() error {
					if _, ok := logLine(logs, "TLS handshake with member at "+n3.RaftAddr(), "server certificate not allowed"); !ok {
						return fmt.Errorf("no member logged refusing n3's certificate when dialing it")
					}
					return nil
				})
				line, _ := logLine(logs, "TLS handshake with member at "+n3.RaftAddr(), "server certificate not allowed")
				t.Logf("dialing n3: %s", line)
				return
			}
			// A new member whose peer certificate comes from another CA
			// calls MemberAdd with it, and is refused at the handshake.
			jaddrs := freeAddrs(t, 2)
			var f peerFiles
			f.cert, f.key = good.issue("n4", "n4", certgen.Server|certgen.Client, time.Time{}, hosts...)
			f.peerCert, f.peerKey = other.issue("n4-peer", "n4", certgen.Server|certgen.Client, time.Time{}, hosts...)
			startPeerMember(t, "n4", jaddrs[0], jaddrs[1], dataDir, logs, good.caFile(), f, "", nil, []string{n1.ClientAddr()})
			eventually(t, 60*time.Second, func() error {
				// n4 says why it cannot join: n1 refused its certificate.
				if _, ok := logLine(logs, "member=n4", "join attempt failed", "does not trust the CA that signed this client's certificate"); !ok {
					return fmt.Errorf("n4 logged no failed join attempt saying why")
				}
				if _, ok := logLine(logs, "member=n1", "TLS handshake refused", "listener=client", "signed by a CA this end does not trust"); !ok {
					return fmt.Errorf("n1 logged no refusal of n4 on its API")
				}
				return nil
			})
			line, _ = logLine(logs, "member=n4", "join attempt failed")
			t.Logf("n4: %s", line)
			ml, err := cli.MemberList(ctx)
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range ml.Members {
				if m.Name == "n4" {
					t.Fatalf("n4 was added: %v", ml.Members)
				}
			}
		})
	}
}
