package learned

import (
	"bytes"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// FuzzParseRecords feeds arbitrary state files to the parser and the
// restore path: no panic, and whatever parses round-trips unchanged.
func FuzzParseRecords(f *testing.F) {
	hdr := `{"format":"pinhole-learned","version":1}` + "\n"
	f.Add([]byte(hdr), false)
	f.Add([]byte(hdr+`{"app":"weather","name":"api.example.com","addr":"198.18.0.1","exp":1764417600000}`+"\n"), false)
	f.Add([]byte(hdr+`{"app":"weather","name":"p.example.com","via":"_ipp._tcp.example.com","exp":1764417600000}`+"\n"+`{"app":"w`), true)
	f.Add([]byte(hdr+`{"app":"a","name":"x","addr":"2001:db8::1","exp":9223372036854775807}`+"\n"), false)
	f.Fuzz(func(t *testing.T, data []byte, torn bool) {
		recs, err := parseRecords(bytes.NewReader(data), torn)
		if err != nil {
			return
		}
		buf := appendHeader(nil)
		for _, r := range recs {
			buf = appendRecord(buf, r)
		}
		again, err := parseRecords(bytes.NewReader(buf), false)
		if err != nil {
			t.Fatalf("re-encoded records do not parse: %v\n%s", err, buf)
		}
		if diff := cmp.Diff(recs, again); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
		s := New(Options{Limits: Limits{TTLCeiling: time.Hour, MaxPerApp: 50, MaxPerName: 5}, Clock: newClock()})
		s.load(recs, t0)
		for _, st := range s.Stats() {
			if st.Entries > 50 {
				t.Fatalf("app %s holds %d entries, cap 50", st.App, st.Entries)
			}
		}
		s.Elements(testPolicy(t), t0)
	})
}
