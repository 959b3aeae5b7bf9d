package wait

import (
	"testing"
	"testing/synctest"
	"time"
)

func TestUntil(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		calls := 0
		if !Until(time.Second, func() bool { calls++; return time.Since(start) >= 100*time.Millisecond }) {
			t.Error("condition that becomes true in time: Until = false")
		}
		if calls < 3 {
			t.Errorf("cond called %d times, want it polled repeatedly", calls)
		}
		start = time.Now()
		if Until(time.Second, func() bool { return false }) {
			t.Error("condition never true: Until = true")
		}
		if d := time.Since(start); d < time.Second || d > time.Second+50*time.Millisecond {
			t.Errorf("gave up after %v, want just past 1s", d)
		}
	})
}
