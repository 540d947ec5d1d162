package member

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/kvd-io/kvd/internal/tlsconfig"
)

// RaftTLS secures the TCP raft transport with TLS.
type RaftTLS struct {
	// Server is the raft listener's config (see tlsconfig.Source.ServerConfig:
	// it may require and check members' certificates). Required.
	Server *tls.Config
	// Client returns the config of one connection to another member's raft
	// address, whose host is serverName. Required.
	Client func(serverName string) *tls.Config
}

// tlsHandshakeTimeout bounds a raft connection's TLS handshake, so that a
// peer that connects and says nothing holds no goroutine for long.
const tlsHandshakeTimeout = 10 * time.Second

// tcpStreamLayer is raft's TCP stream layer with an advertised address that
// may be a host name. raft's own NewTCPTransport takes only a resolved IP,
// which breaks members whose IP changes across restarts but whose name does
// not (Kubernetes StatefulSet pods behind a headless Service). With TLS, it
// hands raft only connections whose handshake succeeded.
type tcpStreamLayer struct {
	listener  net.Listener
	advertise net.Addr
	tls       *RaftTLS

	// With TLS: handshaken connections, from the accept loop.
	accepted chan net.Conn
	refusals *tlsconfig.RefusalLog
	closed   chan struct{}
	close    sync.Once
	wg       sync.WaitGroup
}

var _ raft.StreamLayer = (*tcpStreamLayer)(nil)

// hostAddr is a net.Addr that keeps a host:port as written.
type hostAddr string

func (a hostAddr) Network() string { return "tcp" }
func (a hostAddr) String() string  { return string(a) }

func newTCPTransport(bind, advertise string, tlsCfg *RaftTLS, log *slog.Logger, logger hclog.Logger) (*raft.NetworkTransport, error) {
	l, err := net.Listen("tcp", bind)
	if err != nil {
		return nil, fmt.Errorf("listen on raft address: %w", err)
	}
	var adv net.Addr = l.Addr()
	if advertise != "" {
		adv = hostAddr(advertise)
	} else if tcp, ok := l.Addr().(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
		l.Close()
		return nil, errors.New("raft address listens on all interfaces: set an advertised raft address other members can reach")
	}
	stream := &tcpStreamLayer{listener: l, advertise: adv, tls: tlsCfg, closed: make(chan struct{})}
	if tlsCfg != nil {
		stream.accepted = make(chan net.Conn)
		stream.refusals = tlsconfig.NewRefusalLog(log, "raft")
		stream.wg.Add(1)
		go stream.acceptTLS()
	}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  logger,
	}), nil
}

// Dial connects to another member's raft address, resolving names each time.
func (t *tcpStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	conn, err := net.DialTimeout("tcp", string(address), timeout)
	if err != nil || t.tls == nil {
		return conn, err
	}
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		conn.Close()
		return nil, err
	}
	tc := tls.Client(conn, t.tls.Client(host))
	ctx, cancel := context.WithTimeout(context.Background(), min(timeout, tlsHandshakeTimeout))
	defer cancel()
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, fmt.Errorf("TLS handshake with member at %s: %w", address, tlsconfig.Explain(tlsconfig.ClientSide, err))
	}
	return tc, nil
}

// acceptTLS accepts connections and hands each to raft once its handshake
// succeeds; a refused one is logged (rate-limited) and closed. It returns
// when the listener is closed.
func (t *tcpStreamLayer) acceptTLS() {
	defer t.wg.Done()
	defer close(t.accepted)
	var hs sync.WaitGroup
	defer hs.Wait()
	for {
		conn, err := t.listener.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return
		}
		hs.Add(1)
		go func() {
			defer hs.Done()
			tc := tls.Server(conn, t.tls.Server)
			ctx, cancel := context.WithTimeout(context.Background(), tlsHandshakeTimeout)
			defer cancel()
			if err := tc.HandshakeContext(ctx); err != nil {
				t.refusals.Refused(conn.RemoteAddr(), tlsconfig.Explain(tlsconfig.ServerSide, err))
				conn.Close()
				return
			}
			select {
			case t.accepted <- tc:
			case <-t.closed:
				tc.Close()
			}
		}()
	}
}

func (t *tcpStreamLayer) Accept() (net.Conn, error) {
	if t.tls == nil {
		return t.listener.Accept()
	}
	select {
	case c, ok := <-t.accepted:
		if ok {
			return c, nil
		}
	case <-t.closed:
	}
	return nil, net.ErrClosed
}

func (t *tcpStreamLayer) Close() error {
	err := t.listener.Close()
	t.close.Do(func() { close(t.closed) })
	t.wg.Wait()
	return err
}

func (t *tcpStreamLayer) Addr() net.Addr { return t.advertise }

var _ io.Closer = (*tcpStreamLayer)(nil)
