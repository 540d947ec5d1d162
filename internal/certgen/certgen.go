package certgen

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority that signs certificates.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// CertPEM is Cert, PEM-encoded: what a trusted CA file holds.
	CertPEM []byte
	// KeyPEM is Key, PKCS#8 PEM-encoded.
	KeyPEM []byte
}

// Usage says what a certificate may authenticate.
type Usage int

const (
	// Server certificates authenticate a listener to its clients.
	Server Usage = 1 << iota
	// Client certificates authenticate a client to a listener.
	Client
)

// Request describes a certificate to issue.
type Request struct {
	// CommonName is the subject's common name. Required.
	CommonName string
	// Hosts are the DNS names and IP addresses the certificate is valid
	// for (its subject alternative names); a server certificate needs at
	// least one.
	Hosts []string
	// Usage is Server, Client or both.
	Usage Usage
	// NotBefore and NotAfter bound the validity. NotAfter before NotBefore
	// is refused; both in the past make an expired certificate, which tests
	// want.
	NotBefore, NotAfter time.Time
}

// NewCA makes a self-signed CA valid from notBefore to notAfter.
func NewCA(commonName string, notBefore, notAfter time.Time) (*CA, error) {
	if !notAfter.After(notBefore) {
		return nil, fmt.Errorf("certgen: CA validity ends (%s) before it starts (%s)", notAfter, notBefore)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certgen: CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"kvd"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("certgen: CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodeCert(der), KeyPEM: keyPEM}, nil
}

// LoadCA reads a CA written by CA.Write (or any PEM certificate and PKCS#8,
// EC or PKCS#1 key that can sign).
func LoadCA(certFile, keyFile string) (*CA, error) {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return nil, fmt.Errorf("certgen: %w", err)
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return nil, fmt.Errorf("certgen: %w", err)
	}
	cb, _ := pem.Decode(certPEM)
	if cb == nil || cb.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("certgen: %s holds no PEM certificate", certFile)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certgen: %s: %w", certFile, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("certgen: %s is not a CA certificate", certFile)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, fmt.Errorf("certgen: %s holds no PEM key", keyFile)
	}
	key, err := parseKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certgen: %s: %w", keyFile, err)
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

func parseKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, errors.New("key cannot sign")
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("want a PKCS#8, EC or PKCS#1 private key")
}

// Issue signs a new certificate and returns it and its key, PEM-encoded.
func (ca *CA) Issue(req Request) (certPEM, keyPEM []byte, err error) {
	if req.CommonName == "" {
		return nil, nil, errors.New("certgen: a common name is required")
	}
	if req.Usage&(Server|Client) == 0 {
		return nil, nil, errors.New("certgen: usage must include Server or Client")
	}
	if req.Usage&Server != 0 && len(req.Hosts) == 0 {
		return nil, nil, fmt.Errorf("certgen: server certificate %q needs at least one host", req.CommonName)
	}
	if !req.NotAfter.After(req.NotBefore) {
		return nil, nil, fmt.Errorf("certgen: certificate %q: validity ends (%s) before it starts (%s)", req.CommonName, req.NotAfter, req.NotBefore)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("certgen: key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: req.CommonName, Organization: []string{"kvd"}},
		NotBefore:    req.NotBefore,
		NotAfter:     req.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	if req.Usage&Server != 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	if req.Usage&Client != 0 {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	for _, h := range req.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("certgen: certificate %q: %w", req.CommonName, err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return encodeCert(der), keyPEM, nil
}

// Write writes the CA's certificate and key as dir/ca.crt and dir/ca.key.
func (ca *CA) Write(dir string) error {
	if err := WriteFile(filepath.Join(dir, "ca.crt"), ca.CertPEM, 0o644); err != nil {
		return err
	}
	return WriteFile(filepath.Join(dir, "ca.key"), ca.KeyPEM, 0o600)
}

// WriteFile writes data to path atomically (a temporary file renamed over
// it), so that a member that reloads the file never reads half of it.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("certgen: %w", err)
	}
	defer os.Remove(tmp.Name()) // no-op once renamed
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("certgen: write %s: %w", path, err)
	}
	if err := tmp.Chmod(perm); err != nil {
		tmp.Close()
		return fmt.Errorf("certgen: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("certgen: write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("certgen: %w", err)
	}
	return nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("certgen: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// serial returns a random 128-bit serial number, unique in practice.
func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		panic(fmt.Sprintf("certgen: crypto/rand failed: %v", err))
	}
	return n
}
