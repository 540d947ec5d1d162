// Package tlsgrpc is kvd's TLS as gRPC transport credentials: client
// credentials that explain a failed handshake and remember why each
// target's last connection failed, and server credentials that log every
// refused handshake. The configs come from package tlsconfig.
package tlsgrpc
