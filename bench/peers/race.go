package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"
)

func sink(args []string) error {
	fs := flag.NewFlagSet("sink", flag.ExitOnError)
	listen := fs.String("listen", "0.0.0.0:8080", "TCP address to accept on")
	fs.Parse(args)
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Println("ready")
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		c.Close()
	}
}

type raceResult struct {
	Cycles       int      `json:"cycles"`
	ResolveFails int      `json:"resolve_fails"`
	ConnectFails int      `json:"connect_fails"`
	SynRetrans   int64    `json:"syn_retrans"`
	ActiveOpens  int64    `json:"active_opens"`
	AttemptFails int64    `json:"attempt_fails"`
	Seconds      float64  `json:"seconds"`
	Errors       []string `json:"errors,omitempty"`
}

// race resolves a fresh name (one address, the upstream synthesises it
// from the name) and connects to the answer at once, cycles times, and
// counts failed first connections and the namespace's SYN retransmissions.
func race(args []string) error {
	fs := flag.NewFlagSet("race", flag.ExitOnError)
	server := fs.String("server", "192.0.2.53:53", "DNS server to ask")
	cycles := fs.Int("cycles", 10000, "resolve-then-connect cycles")
	first := fs.String("first", "198.18.64.0", "first address the names resolve to")
	domain := fs.String("domain", "bench.example", "domain the upstream synthesises names in (prefix n-)")
	port := fs.Int("port", 8080, "TCP port of the sink")
	fs.Parse(args)
	addr, err := netip.ParseAddr(*first)
	if err != nil || !addr.Is4() {
		return fmt.Errorf("-first: want an IPv4 address, got %q", *first)
	}
	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	syn0, open0, fail0, err := tcpStats()
	if err != nil {
		return err
	}
	res := raceResult{Cycles: *cycles}
	start := time.Now()
	for range *cycles {
		b := addr.As4()
		addr = addr.Next()
		name := fmt.Sprintf("n-%d-%d-%d-%d.%s.", b[0], b[1], b[2], b[3], strings.Trim(*domain, "."))
		resp, _, err := c.Exchange(new(dns.Msg).SetQuestion(name, dns.TypeA), *server)
		var got netip.Addr
		if err == nil && len(resp.Answer) == 1 {
			if a, ok := resp.Answer[0].(*dns.A); ok {
				got, _ = netip.AddrFromSlice(a.A.To4())
			}
		}
		if !got.IsValid() {
			res.ResolveFails++
			if len(res.Errors) < 5 {
				res.Errors = append(res.Errors, fmt.Sprintf("resolve %s: %v %v", name, err, resp))
			}
			continue
		}
		conn, err := net.DialTimeout("tcp", netip.AddrPortFrom(got, uint16(*port)).String(), 3*time.Second)
		if err != nil {
			res.ConnectFails++
			if len(res.Errors) < 5 {
				res.Errors = append(res.Errors, fmt.Sprintf("connect %s: %v", got, err))
			}
			continue
		}
		conn.Close()
	}
	res.Seconds = time.Since(start).Seconds()
	syn1, open1, fail1, err := tcpStats()
	if err != nil {
		return err
	}
	res.SynRetrans, res.ActiveOpens, res.AttemptFails = syn1-syn0, open1-open0, fail1-fail0
	js, _ := json.Marshal(res)
	fmt.Println(string(js))
	return nil
}

// tcpStats reads this network namespace's SYN retransmissions, active
// opens and failed connection attempts.
func tcpStats() (synRetrans, activeOpens, attemptFails int64, err error) {
	read := func(path, prefix, field string) (int64, error) {
		b, err := os.ReadFile(path)
		if err != nil {
			return 0, err
		}
		lines := strings.Split(string(b), "\n")
		for i := 0; i+1 < len(lines); i++ {
			if !strings.HasPrefix(lines[i], prefix) || !strings.HasPrefix(lines[i+1], prefix) {
				continue
			}
			names, vals := strings.Fields(lines[i]), strings.Fields(lines[i+1])
			for j := range names {
				if names[j] == field && j < len(vals) {
					var v int64
					_, err := fmt.Sscan(vals[j], &v)
					return v, err
				}
			}
		}
		return 0, fmt.Errorf("%s: no %s %s", path, prefix, field)
	}
	if synRetrans, err = read("/proc/net/netstat", "TcpExt:", "TCPSynRetrans"); err != nil {
		return
	}
	if activeOpens, err = read("/proc/net/snmp", "Tcp:", "ActiveOpens"); err != nil {
		return
	}
	attemptFails, err = read("/proc/net/snmp", "Tcp:", "AttemptFails")
	return
}
