package netnstest

import "testing"

// BenchmarkNewClose measures bringing a bed up and down.
func BenchmarkNewClose(b *testing.B) {
	for b.Loop() {
		bed := New(b)
		if err := bed.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkNewAppClose measures creating and removing an app identity.
func BenchmarkNewAppClose(b *testing.B) {
	for b.Loop() {
		app := NewApp(b, "bench")
		if err := app.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
