package lab

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net/netip"
	"testing"
	"time"
)

func TestCA(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	ca, err := NewCA("pinhole-lab", now)
	if err != nil {
		t.Fatal(err)
	}
	if !ca.Cert.IsCA || !ca.Cert.BasicConstraintsValid || !ca.Cert.MaxPathLenZero {
		t.Errorf("CA certificate: IsCA %v, constraints %v, max path 0 %v", ca.Cert.IsCA, ca.Cert.BasicConstraintsValid, ca.Cert.MaxPathLenZero)
	}
	block, _ := pem.Decode(ca.CertPEM())
	if block == nil || block.Type != "CERTIFICATE" {
		t.Fatalf("CertPEM: %q", ca.CertPEM())
	}
	names := []string{"api.contoso.example", "*.contoso-cdn.example", "contoso-cdn.example"}
	addrs := []netip.Addr{netip.MustParseAddr("198.18.1.2"), netip.MustParseAddr("2001:db8:1::2")}
	certPEM, keyPEM, err := ca.Issue(names, addrs, now)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("certificate and key do not match: %v", err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	verify := func(name string, at time.Time) error {
		_, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots, CurrentTime: at,
			KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		return err
	}
	for _, name := range []string{"api.contoso.example", "img.contoso-cdn.example", "contoso-cdn.example", "198.18.1.2", "2001:db8:1::2"} {
		if err := verify(name, now); err != nil {
			t.Errorf("verify %s: %v", name, err)
		}
	}
	for _, tt := range []struct {
		name string
		at   time.Time
	}{
		{"status.contoso.example", now},                  // not in the certificate
		{"a.b.contoso-cdn.example", now},                 // a wildcard covers one label
		{"api.contoso.example", now.Add(-2 * time.Hour)}, // before notBefore
		{"api.contoso.example", now.Add(certLifetime + time.Hour)},
	} {
		if verify(tt.name, tt.at) == nil {
			t.Errorf("verify %s at %s: accepted", tt.name, tt.at)
		}
	}
	if _, _, err := ca.Issue(nil, nil, now); err == nil {
		t.Error("Issue without names or addresses: no error")
	}
	// Another CA must not vouch for the lab's certificate.
	other, err := NewCA("other", now)
	if err != nil {
		t.Fatal(err)
	}
	otherRoots := x509.NewCertPool()
	otherRoots.AddCert(other.Cert)
	if _, err := leaf.Verify(x509.VerifyOptions{DNSName: names[0], Roots: otherRoots, CurrentTime: now}); err == nil {
		t.Error("a certificate verified against another CA")
	}
}
