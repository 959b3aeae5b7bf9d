// Package wait polls for a condition with a deadline, for code that waits on
// another process or the kernel where there is nothing to be notified by.
package wait

import "time"

// Until calls cond until it returns true or timeout passes, checking often
// at first and then every 50ms. It reports whether cond became true.
func Until(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	pause := time.Millisecond
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
}
