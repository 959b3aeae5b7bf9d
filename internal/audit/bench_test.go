package audit

import (
	"net/netip"
	"testing"
	"time"
)

func BenchmarkParsePacket(b *testing.B) {
	for _, bc := range []struct {
		name string
		pkt  []byte
	}{
		{"ipv4-tcp", ipv4(6, "10.0.0.2", "198.18.0.9", 0x4000, tcpHdr(40000, 443, SYN))},
		{"ipv6-chain-udp", ipv6(0, "2001:db8::2", "2001:db8:1::9", extHdr(60, 1, extHdr(43, 0, extHdr(17, 0, udpHdr(1, 2)))))},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParsePacket(bc.pkt); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDeliver measures the packet path: a repeat of an open aggregate,
// and a new record each time (names looked up, ring, no subscribers, no file).
func BenchmarkDeliver(b *testing.B) {
	names := fakeNames{names: map[string]map[netip.Addr][]string{"weather": {addr("198.18.0.9"): {"api.weather.example"}}}}
	b.Run("repeat", func(b *testing.B) {
		l := New(Options{Names: names})
		defer l.Close()
		p := udpOut("weather", 9)
		b.ReportAllocs()
		for b.Loop() {
			l.Deliver(p)
		}
	})
	b.Run("new", func(b *testing.B) {
		// A window of 1ns closes every aggregate before its next packet.
		l := New(Options{Names: names, Window: time.Nanosecond})
		defer l.Close()
		p := udpOut("weather", 9)
		b.ReportAllocs()
		for b.Loop() {
			l.Deliver(p)
		}
		if n := l.Stats().Records; len(n) == 0 {
			b.Fatal("no records")
		}
	})
}
