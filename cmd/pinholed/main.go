// Command pinholed is pinhole's daemon: per-app default-deny networking
// with DNS-driven allow-lists, audit and a REST API.
package main

import (
	"os"

	"github.com/pinhole-net/pinhole/internal/daemon"
)

func main() {
	os.Exit(daemon.Main(os.Args[1:], os.Stdout, os.Stderr))
}
