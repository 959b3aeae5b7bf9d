// Package netnstest is the namespace test bed for pinhole's integration tests.
//
// A test binary that uses it calls Main from TestMain:
//
//	func TestMain(m *testing.M) { netnstest.Main(m) }
//
// As root, Main re-executes the test binary in a fresh network namespace (the
// "device") and runs the tests there, so nothing a test does to nftables,
// routes or sysctls reaches the machine's own namespace. Without root it runs
// the tests normally and New and NewApp skip with "needs root: ...". New
// refuses (fails the test) to run in the initial network namespace. In the
// device namespace Main brings lo up and sets net.ipv4.ip_unprivileged_port_start=0
// and net.ipv4.ping_group_range="0 2147483647", so app UIDs can serve low
// ports and ping.
//
// New builds an "internet" namespace joined to the device by a veth pair, with
// IPv4 and IPv6, public addresses from 198.18.0.0/15 and 2001:db8::/32 on the
// internet side and a dead-end default route in the device (so a sendto to
// any address reaches the output hooks). Servers run on the internet side as
// helper roles of the test binary itself (Bed.TCPEcho, UDPEcho, HTTP,
// StartRole): they report when they listen and which peers connected.
// NewApp makes an app identity: a cgroup v2 directory and a UID; App.Command
// starts processes already inside both (clone3 CLONE_INTO_CGROUP), and
// CommandAs with only one of them.
//
// Custom roles (a fake upstream DNS server, say) are registered before Main:
//
//	func TestMain(m *testing.M) {
//		netnstest.RegisterRole("upstream", serveUpstream)
//		netnstest.Main(m)
//	}
//
// and started with Bed.StartRole (internet side), App.StartRole (as an app in
// the device) or StartRole (device, as root).
//
// Everything is removed in t.Cleanup, also when the test fails: processes,
// namespaces, veths, cgroups. Names carry the creating binary's pid
// ("ph-inet-<pid>-<rand>", "pinhole-test-<pid>-<rand>"), and Main sweeps
// leftovers of binaries that were killed before their cleanup ran.
//
// Addresses outside every bed's prefixes follow the dead-end default route
// and are silently dropped on the internet side, so clients need timeouts.
//
// Tests in one package share the device namespace: tests that install
// firewall rules must run one after another (no t.Parallel). Packages run in
// parallel, each in its own device namespace. Several Beds may exist at once
// in one device namespace; each has its own link subnet and public prefix.
//
// The package is Linux only and needs the ip and nsenter tools.
package netnstest
