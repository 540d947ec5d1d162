package member

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// tcpStreamLayer is raft's TCP stream layer with an advertised address that
// may be a host name. raft's own NewTCPTransport takes only a resolved IP,
// which breaks members whose IP changes across restarts but whose name does
// not (Kubernetes StatefulSet pods behind a headless Service).
type tcpStreamLayer struct {
	listener  net.Listener
	advertise net.Addr
}

var _ raft.StreamLayer = (*tcpStreamLayer)(nil)

// hostAddr is a net.Addr that keeps a host:port as written.
type hostAddr string

func (a hostAddr) Network() string { return "tcp" }
func (a hostAddr) String() string  { return string(a) }

func newTCPTransport(bind, advertise string, logger hclog.Logger) (*raft.NetworkTransport, error) {
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
	stream := &tcpStreamLayer{listener: l, advertise: adv}
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream:  stream,
		MaxPool: 3,
		Timeout: 10 * time.Second,
		Logger:  logger,
	}), nil
}

// Dial connects to another member's raft address, resolving names each time.
func (t *tcpStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	return net.DialTimeout("tcp", string(address), timeout)
}

func (t *tcpStreamLayer) Accept() (net.Conn, error) { return t.listener.Accept() }
func (t *tcpStreamLayer) Close() error              { return t.listener.Close() }
func (t *tcpStreamLayer) Addr() net.Addr            { return t.advertise }

var _ io.Closer = (*tcpStreamLayer)(nil)
