package lab

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// Probe is one attempt an app makes: an optional DNS lookup, then an
// optional connection, then what it says over it. The demo runs probes as
// the apps, inside the device namespace.
type Probe struct {
	// Name, if set, is looked up first (A, or AAAA with IPv6) at Server,
	// and the connection goes to its first address.
	Name       string         `json:"name,omitempty"`
	IPv6       bool           `json:"ipv6,omitempty"`
	Server     netip.AddrPort `json:"server,omitzero"`
	DNSOverTCP bool           `json:"dns_over_tcp,omitempty"`
	// Addr is where to connect when Name is empty.
	Addr netip.Addr `json:"addr,omitzero"`
	// Port 0 means the lookup only.
	Port  uint16 `json:"port,omitempty"`
	Proto string `json:"proto,omitempty"` // "tcp" (default) or "udp"
	// Talk is what to do once connected: "http", "https", "mqtts", "ntp",
	// or "" to connect only.
	Talk    string        `json:"talk,omitempty"`
	Path    string        `json:"path,omitempty"`
	Timeout time.Duration `json:"timeout"`
}

// ProbeResult is what happened at each step of a Probe; a step that did
// not run is nil.
type ProbeResult struct {
	DNS  *DNSResult  `json:"dns,omitempty"`
	Conn *StepResult `json:"conn,omitempty"`
	Talk *StepResult `json:"talk,omitempty"`
}

// DNSResult is the answer to a lookup.
type DNSResult struct {
	Server string `json:"server"`
	// Rcode is NOERROR, NXDOMAIN, SERVFAIL...; empty if no answer came.
	Rcode string `json:"rcode,omitempty"`
	// Chain are the CNAME targets in answer order.
	Chain []string     `json:"chain,omitempty"`
	Addrs []netip.Addr `json:"addrs,omitempty"`
	// EDE is the extended DNS error text, if the answer had one.
	EDE   string        `json:"ede,omitempty"`
	Err   string        `json:"err,omitempty"`
	Errno string        `json:"errno,omitempty"`
	Took  time.Duration `json:"took"`
}

// StepResult is the outcome of a connection or of the talk over it.
type StepResult struct {
	Addr   string        `json:"addr,omitempty"`
	OK     bool          `json:"ok"`
	Detail string        `json:"detail,omitempty"`
	Err    string        `json:"err,omitempty"`
	Errno  string        `json:"errno,omitempty"`
	Took   time.Duration `json:"took"`
}

// errno names the reason of a network error the way the demo explains it.
func errno(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, syscall.ECONNREFUSED):
		return "ECONNREFUSED"
	case errors.Is(err, syscall.EPERM):
		return "EPERM"
	case errors.Is(err, syscall.EACCES):
		return "EACCES"
	case errors.Is(err, syscall.EHOSTUNREACH):
		return "EHOSTUNREACH"
	case errors.Is(err, syscall.ENETUNREACH):
		return "ENETUNREACH"
	case errors.Is(err, syscall.ECONNRESET):
		return "ECONNRESET"
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return ""
}

// RunProbe runs one probe; roots are the CAs TLS trusts.
func RunProbe(ctx context.Context, pr Probe, roots *x509.CertPool) ProbeResult {
	var res ProbeResult
	if pr.Timeout <= 0 {
		pr.Timeout = 2 * time.Second
	}
	addr := pr.Addr
	if pr.Name != "" {
		res.DNS = lookup(pr)
		if pr.Port == 0 {
			return res
		}
		for _, a := range res.DNS.Addrs {
			if a.Is6() == pr.IPv6 {
				addr = a
				break
			}
		}
		if !addr.IsValid() {
			return res
		}
	}
	if pr.Port == 0 || !addr.IsValid() {
		return res
	}
	proto := pr.Proto
	if proto == "" {
		proto = "tcp"
	}
	ap := netip.AddrPortFrom(addr, pr.Port)
	d := net.Dialer{Timeout: pr.Timeout}
	start := time.Now()
	conn, err := d.DialContext(ctx, proto, ap.String())
	res.Conn = &StepResult{Addr: ap.String(), OK: err == nil, Took: time.Since(start)}
	if err != nil {
		res.Conn.Err, res.Conn.Errno = err.Error(), errno(err)
		return res
	}
	defer conn.Close()
	if pr.Talk == "" {
		return res
	}
	conn.SetDeadline(time.Now().Add(pr.Timeout))
	start = time.Now()
	detail, err := talk(conn, pr, roots)
	res.Talk = &StepResult{OK: err == nil, Detail: detail, Took: time.Since(start)}
	if err != nil {
		res.Talk.Err, res.Talk.Errno = err.Error(), errno(err)
	}
	return res
}

func lookup(pr Probe) *DNSResult {
	qtype := dns.TypeA
	if pr.IPv6 {
		qtype = dns.TypeAAAA
	}
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(pr.Name), qtype)
	m.SetEdns0(1232, false)
	c := &dns.Client{Net: "udp", Timeout: pr.Timeout}
	if pr.DNSOverTCP {
		c.Net = "tcp"
	}
	server := pr.Server
	if !server.IsValid() {
		server = netip.AddrPortFrom(ResolverV4, resolverPort)
	}
	res := &DNSResult{Server: server.String()}
	if pr.DNSOverTCP {
		res.Server += " (TCP)"
	}
	start := time.Now()
	resp, _, err := c.Exchange(m, server.String())
	res.Took = time.Since(start)
	if err != nil {
		res.Err, res.Errno = err.Error(), errno(err)
		return res
	}
	res.Rcode = dns.RcodeToString[resp.Rcode]
	for _, rr := range resp.Answer {
		switch rr := rr.(type) {
		case *dns.CNAME:
			res.Chain = append(res.Chain, strings.TrimSuffix(rr.Target, "."))
		case *dns.A:
			if a, ok := netip.AddrFromSlice(rr.A.To4()); ok {
				res.Addrs = append(res.Addrs, a)
			}
		case *dns.AAAA:
			if a, ok := netip.AddrFromSlice(rr.AAAA); ok {
				res.Addrs = append(res.Addrs, a)
			}
		}
	}
	if opt := resp.IsEdns0(); opt != nil {
		for _, o := range opt.Option {
			if e, ok := o.(*dns.EDNS0_EDE); ok {
				res.EDE = e.ExtraText
			}
		}
	}
	return res
}

// talk speaks the probe's protocol over conn and describes the answer.
func talk(conn net.Conn, pr Probe, roots *x509.CertPool) (string, error) {
	host := pr.Name
	if host == "" {
		host = pr.Addr.String()
	}
	switch pr.Talk {
	case "http":
		return httpGet(conn, host, pr.Path)
	case "https", "mqtts":
		tc := tls.Client(conn, &tls.Config{ServerName: host, RootCAs: roots, MinVersion: tls.VersionTLS12})
		if err := tc.Handshake(); err != nil {
			return "", fmt.Errorf("TLS handshake: %w", err)
		}
		if pr.Talk == "mqtts" {
			return mqttHello(tc, "pinhole-lab-probe")
		}
		return httpGet(tc, host, pr.Path)
	case "ntp":
		return ntpQuery(conn)
	}
	return "", fmt.Errorf("unknown talk %q", pr.Talk)
}

func httpGet(conn net.Conn, host, path string) (string, error) {
	if path == "" {
		path = "/"
	}
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: pinhole-lab\r\nConnection: close\r\n\r\n", path, host); err != nil {
		return "", err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return "", fmt.Errorf("read HTTP answer: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
	line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	detail := fmt.Sprintf("HTTP %d: %q", resp.StatusCode, line)
	if resp.StatusCode != http.StatusOK {
		return detail, fmt.Errorf("HTTP status %d", resp.StatusCode)
	}
	return detail, nil
}

// mqttHello connects as an MQTT 3.1.1 client, publishes one telemetry
// message (QoS 0) and disconnects.
func mqttHello(conn net.Conn, clientID string) (string, error) {
	payload := mqttString(clientID)
	vh := append(mqttString("MQTT"), 4, 0x02, 0, 60) // level 4, clean session, keep-alive 60s
	if _, err := conn.Write(mqttPacket(0x10, append(vh, payload...))); err != nil {
		return "", fmt.Errorf("send MQTT CONNECT: %w", err)
	}
	var ack [4]byte
	if _, err := io.ReadFull(conn, ack[:]); err != nil {
		return "", fmt.Errorf("read MQTT CONNACK: %w", err)
	}
	if ack[0] != 0x20 || ack[1] != 2 {
		return "", fmt.Errorf("the broker did not answer with CONNACK (got % x)", ack)
	}
	if ack[3] != 0 {
		return fmt.Sprintf("CONNACK return code %d", ack[3]), fmt.Errorf("the broker refused the connection (return code %d)", ack[3])
	}
	topic := "devices/" + clientID + "/messages/events/"
	msg := append(mqttString(topic), []byte(`{"temperature":21.5}`)...)
	if _, err := conn.Write(mqttPacket(0x30, msg)); err != nil {
		return "", fmt.Errorf("send MQTT PUBLISH: %w", err)
	}
	conn.Write([]byte{0xe0, 0}) // DISCONNECT
	return "the broker accepted the MQTT connection (CONNACK 0) and a message on " + topic, nil
}

func mqttString(s string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, uint16(len(s))), s...)
}

func mqttPacket(header byte, body []byte) []byte {
	out := []byte{header}
	n := len(body)
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		out = append(out, b)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}

// ntpQuery sends an SNTP client request and reads the answer's stratum.
func ntpQuery(conn net.Conn) (string, error) {
	req := make([]byte, 48)
	req[0] = 0x23 // LI 0, version 4, mode 3 (client)
	if _, err := conn.Write(req); err != nil {
		return "", fmt.Errorf("send NTP request: %w", err)
	}
	resp := make([]byte, 48)
	n, err := conn.Read(resp)
	if err != nil {
		return "", fmt.Errorf("read NTP answer: %w", err)
	}
	if n < 48 || resp[0]&7 != 4 {
		return "", errors.New("not an NTP server answer")
	}
	return fmt.Sprintf("NTP answer, stratum %d", resp[1]), nil
}
