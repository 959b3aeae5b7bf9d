package lab

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

// fakeDNS serves a CNAME chain for chain.example, NXDOMAIN with an
// extended error for blocked.example, on loopback.
func fakeDNS(t *testing.T) netip.AddrPort {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := dns.NewServeMux()
	mux.HandleFunc(".", func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		q := r.Question[0]
		switch q.Name {
		case "chain.example.":
			c1, _ := dns.NewRR("chain.example. 60 IN CNAME edge.cdn.example.")
			c2, _ := dns.NewRR("edge.cdn.example. 60 IN CNAME e1.cdn.example.")
			a, _ := dns.NewRR("e1.cdn.example. 60 IN A 198.18.1.9")
			aaaa, _ := dns.NewRR("e1.cdn.example. 60 IN AAAA 2001:db8:1::9")
			m.Answer = []dns.RR{c1, c2}
			if q.Qtype == dns.TypeAAAA {
				m.Answer = append(m.Answer, aaaa)
			} else {
				m.Answer = append(m.Answer, a)
			}
		default:
			m.Rcode = dns.RcodeNameError
			o := new(dns.OPT)
			o.Hdr.Name, o.Hdr.Rrtype = ".", dns.TypeOPT
			o.Option = append(o.Option, &dns.EDNS0_EDE{InfoCode: dns.ExtendedErrorCodeBlocked, ExtraText: "pinhole: app x may not resolve " + q.Name})
			m.Extra = append(m.Extra, o)
		}
		w.WriteMsg(m)
	})
	srv := &dns.Server{PacketConn: pc, Handler: mux}
	go srv.ActivateAndServe()
	t.Cleanup(func() { srv.Shutdown() })
	return netip.MustParseAddrPort(pc.LocalAddr().String())
}

func TestLookup(t *testing.T) {
	t.Parallel()
	server := fakeDNS(t)
	r := lookup(Probe{Name: "chain.example", Server: server, Timeout: 2 * time.Second})
	if r.Rcode != "NOERROR" || r.Err != "" {
		t.Fatalf("lookup: %+v", r)
	}
	if diff := cmp.Diff([]string{"edge.cdn.example", "e1.cdn.example"}, r.Chain); diff != "" {
		t.Errorf("chain (-want +got):\n%s", diff)
	}
	if len(r.Addrs) != 1 || r.Addrs[0] != netip.MustParseAddr("198.18.1.9") {
		t.Errorf("addrs = %v", r.Addrs)
	}
	r6 := lookup(Probe{Name: "chain.example", IPv6: true, Server: server, Timeout: 2 * time.Second})
	if len(r6.Addrs) != 1 || r6.Addrs[0] != netip.MustParseAddr("2001:db8:1::9") {
		t.Errorf("AAAA addrs = %v", r6.Addrs)
	}
	nx := lookup(Probe{Name: "blocked.example", Server: server, Timeout: 2 * time.Second})
	if nx.Rcode != "NXDOMAIN" || !strings.Contains(nx.EDE, "may not resolve blocked.example") {
		t.Errorf("blocked: %+v", nx)
	}
	if line := dnsLine("chain.example", r); line != "DNS "+server.String()+": chain.example -> CNAME edge.cdn.example -> CNAME e1.cdn.example -> 198.18.1.9 in "+ms(r.Took) {
		t.Errorf("dnsLine = %q", line)
	}
}

func TestErrno(t *testing.T) {
	t.Parallel()
	wrap := func(e error) error { return &net.OpError{Op: "dial", Net: "tcp", Err: e} }
	for err, want := range map[error]string{
		wrap(syscall.ECONNREFUSED):      "ECONNREFUSED",
		wrap(syscall.EPERM):             "EPERM",
		wrap(syscall.EHOSTUNREACH):      "EHOSTUNREACH",
		context.DeadlineExceeded:        "timeout",
		wrap(errors.New("other thing")): "",
	} {
		if got := errno(err); got != want {
			t.Errorf("errno(%v) = %q, want %q", err, got, want)
		}
	}
}

// tlsServer runs an HTTPS server on loopback with a certificate of a new
// lab CA for the names, and returns its address and the CA pool.
func tlsServer(t *testing.T, h http.Handler, names ...string) (netip.AddrPort, *x509.CertPool) {
	t.Helper()
	ca, err := NewCA("test", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.Issue(names, []netip.Addr{netip.MustParseAddr("127.0.0.1")}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return netip.MustParseAddrPort(srv.Listener.Addr().String()), pool
}

func TestRunProbeHTTPS(t *testing.T) {
	t.Parallel()
	addr, pool := tlsServer(t, WebHandler(slog.New(slog.DiscardHandler)), "127.0.0.1")
	res := RunProbe(context.Background(), Probe{Addr: addr.Addr(), Port: addr.Port(), Talk: "https", Path: "/connecttest.txt", Timeout: 5 * time.Second}, pool)
	if res.Conn == nil || !res.Conn.OK || res.Talk == nil || !res.Talk.OK {
		t.Fatalf("probe: %+v %+v", res.Conn, res.Talk)
	}
	if want := `HTTP 200: "` + ConnectTestBody + `"`; res.Talk.Detail != want {
		t.Errorf("detail = %q, want %q", res.Talk.Detail, want)
	}
	// A client that does not trust the lab CA fails the handshake.
	res = RunProbe(context.Background(), Probe{Addr: addr.Addr(), Port: addr.Port(), Talk: "https", Timeout: 5 * time.Second}, x509.NewCertPool())
	if res.Talk == nil || res.Talk.OK || !strings.Contains(res.Talk.Err, "TLS handshake") {
		t.Errorf("untrusted CA: %+v", res.Talk)
	}
}

func TestRunProbeRefused(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := netip.MustParseAddrPort(l.Addr().String())
	l.Close()
	res := RunProbe(context.Background(), Probe{Addr: addr.Addr(), Port: addr.Port(), Timeout: time.Second}, nil)
	if res.Conn == nil || res.Conn.OK || res.Conn.Errno != "ECONNREFUSED" {
		t.Errorf("closed port: %+v", res.Conn)
	}
}

func TestWebHandler(t *testing.T) {
	t.Parallel()
	h := WebHandler(slog.New(slog.DiscardHandler))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "http://www.msftconnecttest.com/connecttest.txt", nil))
	if rec.Body.String() != ConnectTestBody {
		t.Errorf("connecttest.txt = %q", rec.Body.String())
	}
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "http://api.contoso.example:80/v1", nil))
	if got := rec.Body.String(); !strings.HasPrefix(got, "pinhole lab: http://api.contoso.example/v1 answered ") {
		t.Errorf("other page = %q", got)
	}
}

// fakeBroker answers one MQTT CONNECT with a CONNACK of code rc and
// returns what the client sent.
func fakeBroker(t *testing.T, conn net.Conn, rc byte) <-chan []byte {
	t.Helper()
	got := make(chan []byte, 1)
	go func() {
		defer conn.Close()
		var buf bytes.Buffer
		hdr := make([]byte, 2)
		if _, err := io.ReadFull(conn, hdr); err != nil {
			got <- nil
			return
		}
		body := make([]byte, hdr[1])
		io.ReadFull(conn, body)
		buf.Write(hdr)
		buf.Write(body)
		conn.Write([]byte{0x20, 2, 0, rc})
		conn.SetReadDeadline(time.Now().Add(time.Second))
		rest, _ := io.ReadAll(conn)
		buf.Write(rest)
		got <- buf.Bytes()
	}()
	return got
}

func TestMQTTHello(t *testing.T) {
	t.Parallel()
	client, server := net.Pipe()
	sent := fakeBroker(t, server, 0)
	detail, err := mqttHello(client, "dev1")
	client.Close()
	if err != nil || !strings.Contains(detail, "CONNACK 0") {
		t.Fatalf("mqttHello = %q, %v", detail, err)
	}
	b := <-sent
	wantConnect := []byte{0x10, 16, 0, 4, 'M', 'Q', 'T', 'T', 4, 0x02, 0, 60, 0, 4, 'd', 'e', 'v', '1'}
	if !bytes.HasPrefix(b, wantConnect) {
		t.Errorf("CONNECT = % x, want % x", b[:min(len(b), len(wantConnect))], wantConnect)
	}
	if !bytes.Contains(b, []byte("devices/dev1/messages/events/")) || !bytes.HasSuffix(b, []byte{0xe0, 0}) {
		t.Errorf("PUBLISH and DISCONNECT missing: % x", b)
	}

	client, server = net.Pipe()
	fakeBroker(t, server, 5)
	if _, err := mqttHello(client, "dev1"); err == nil || !strings.Contains(err.Error(), "return code 5") {
		t.Errorf("refused CONNACK: %v", err)
	}
	client.Close()
}

func TestMQTTPacketLength(t *testing.T) {
	t.Parallel()
	for n, want := range map[int][]byte{
		0:     {0x30, 0},
		127:   {0x30, 0x7f},
		128:   {0x30, 0x80, 0x01},
		16383: {0x30, 0xff, 0x7f},
		16384: {0x30, 0x80, 0x80, 0x01},
	} {
		got := mqttPacket(0x30, make([]byte, n))
		if !bytes.Equal(got[:len(want)], want) || len(got) != len(want)+n {
			t.Errorf("length %d: header % x, want % x", n, got[:len(want)], want)
		}
	}
}

func TestNTPQuery(t *testing.T) {
	t.Parallel()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	go func() {
		buf := make([]byte, 100)
		n, from, err := pc.ReadFrom(buf)
		if err != nil || n != 48 || buf[0] != 0x23 {
			return
		}
		resp := make([]byte, 48)
		resp[0], resp[1] = 0x24, 2 // version 4, mode 4 (server), stratum 2
		pc.WriteTo(resp, from)
	}()
	conn, err := net.Dial("udp", pc.LocalAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	got, err := ntpQuery(conn)
	if err != nil || got != "NTP answer, stratum 2" {
		t.Errorf("ntpQuery = %q, %v", got, err)
	}
}
