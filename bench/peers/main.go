// Command peers is the harness bench/run uses for the measurements that
// compare pinhole with a peer in the same run: ruleset apply against the nft
// CLI loading the same table, and the resolve-then-connect race against any
// DNS server that fills the app's set (pinhole's stub or dnsmasq --nftset).
// The commands that touch nftables refuse the machine's own network
// namespace; bench/run starts them in namespaces it creates.
//
//	peers apply -apps 1,100,1000 -reps 5 -dir DIR
//	peers sink -listen 0.0.0.0:8080
//	peers race -server 192.0.2.53:53 -cycles 10000 -first 198.18.64.0 -port 8080
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: peers apply|sink|race [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "apply":
		err = apply(os.Args[2:])
	case "sink":
		err = sink(os.Args[2:])
	case "race":
		err = race(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
}
