package config

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

func BenchmarkParseExample(b *testing.B) {
	data, err := os.ReadFile(examplePath)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(examplePath, data); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkParseManyApps shows that checks across apps (names, identities,
// nested cgroups) stay linear.
func BenchmarkParseManyApps(b *testing.B) {
	for _, n := range []int{1000, 10000} {
		var sb strings.Builder
		sb.WriteString("dns:\n  stub_port_base: 20000\napps:\n")
		for i := range n {
			fmt.Fprintf(&sb, "  - {name: app%d, manifest: m%d.json, cgroup: pinhole/g%d/app%d}\n", i, i, i%10, i)
		}
		data := []byte(sb.String())
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse("p.yaml", data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
