package audit

import (
	"testing"

	"github.com/pinhole-net/pinhole/internal/logprefix"
)

// Seeds are in testdata/fuzz/<FuzzName>.

func FuzzParsePacket(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		fl, err := ParsePacket(b)
		if err != nil {
			if fl != (Flow{}) {
				t.Fatalf("ParsePacket(%x) = %+v with error %v, want zero Flow", b, fl, err)
			}
			return
		}
		v := b[0] >> 4
		if want := v == 4; fl.Src.Is4() != want || fl.Dst.Is4() != want || !fl.Src.IsValid() || !fl.Dst.IsValid() {
			t.Fatalf("ParsePacket(%x): version %d gave addresses %v, %v", b, v, fl.Src, fl.Dst)
		}
		if !fl.Proto.hasPorts() && (fl.SrcPort != 0 || fl.DstPort != 0) {
			t.Fatalf("ParsePacket(%x): ports for protocol %v", b, fl.Proto)
		}
		if fl.Proto != ProtoTCP && fl.TCPFlags != 0 {
			t.Fatalf("ParsePacket(%x): tcp flags for protocol %v", b, fl.Proto)
		}
		if fl.Proto != ProtoICMP && fl.Proto != ProtoICMPv6 && (fl.ICMPType != 0 || fl.ICMPCode != 0) {
			t.Fatalf("ParsePacket(%x): icmp type for protocol %v", b, fl.Proto)
		}
	})
}

// FuzzDeliver feeds one logged packet, prefix and payload, through a Log.
func FuzzDeliver(f *testing.F) {
	f.Fuzz(func(t *testing.T, prefix string, payload []byte) {
		l := New(Options{})
		defer l.Close()
		l.Deliver(Packet{Prefix: prefix, Payload: payload})
		s := l.Stats()
		var packets uint64
		for _, n := range s.Packets {
			packets += n
		}
		if packets+s.ForeignPrefix+s.ParseErrors != 1 {
			t.Fatalf("Deliver(%q, %x): stats %+v, want the packet counted once", prefix, payload, s)
		}
		recs := l.Query(Filter{})
		if len(recs) != int(packets) {
			t.Fatalf("Deliver(%q, %x): %d records for %d packets", prefix, payload, len(recs), packets)
		}
		if len(recs) == 1 {
			r := recs[0]
			p, err := logprefix.Parse(prefix)
			if err != nil || r.App != p.Identity || r.Verdict != p.Verdict || r.Direction != p.Direction || !validIdentity(r.App) {
				t.Fatalf("Deliver(%q, %x) made %+v; prefix parses as %+v, %v", prefix, payload, r, p, err)
			}
			if r.ID != 1 || r.Count != 1 || !r.Src.IsValid() {
				t.Fatalf("Deliver(%q, %x) made %+v", prefix, payload, r)
			}
		}
	})
}

// FuzzParseTail reads back a damaged audit file.
func FuzzParseTail(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte, partial bool) {
		recs := parseTail(b, partial)
		for i := 1; i < len(recs); i++ {
			if recs[i-1].ID >= recs[i].ID {
				t.Fatalf("parseTail(%q): IDs %d then %d, want increasing", b, recs[i-1].ID, recs[i].ID)
			}
		}
	})
}
