// Package certgen makes the certificates of a test or development cluster
// with Go's crypto: a CA, and certificates it signs for servers, members and
// clients. kvdutil certs and the TLS tests use it, so nobody needs openssl
// to try TLS. Keys are ECDSA P-256, written as PKCS#8 PEM.
package certgen
