package lab

import (
	"fmt"
	"strings"
)

// dnsTTL is the TTL of the lab's DNS answers.
const dnsTTL = 300

// RenderDnsmasq writes the config of the lab's DNS server: every zone name
// with its CNAME chain, A and AAAA records, and NXDOMAIN for every other
// name, as the real internet answers names that do not exist.
func RenderDnsmasq(zone []Host) string {
	var b strings.Builder
	b.WriteString(`# The lab internet's DNS server (dnsmasq), written by pinhole lab up.
# It knows only the names below; every other name is NXDOMAIN.
no-resolv
no-hosts
no-poll
bind-dynamic
`)
	fmt.Fprintf(&b, "listen-address=%s\nlisten-address=%s\n", ResolverV4, ResolverV6)
	fmt.Fprintf(&b, "local-ttl=%d\n", dnsTTL)
	b.WriteString("log-queries\nlog-facility=-\nlocal=/#/\n")
	for _, h := range zone {
		fmt.Fprintf(&b, "\n# %s: %s\n", h.Name, h.Note)
		if d, ok := strings.CutPrefix(h.Name, "*."); ok {
			fmt.Fprintf(&b, "address=/%s/%s\naddress=/%s/%s\n", d, h.V4, d, h.V6)
			continue
		}
		prev := h.Name
		for _, c := range h.Chain {
			fmt.Fprintf(&b, "cname=%s,%s\n", prev, c)
			prev = c
		}
		fmt.Fprintf(&b, "host-record=%s,%s,%s\n", prev, h.V4, h.V6)
	}
	return b.String()
}

// RenderMosquitto writes the config of the lab's MQTT broker: one TLS
// listener on MQTTPort with the lab's server certificate, anonymous clients;
// it runs as the user runAs.
func RenderMosquitto(caFile, certFile, keyFile, runAs string) string {
	return fmt.Sprintf(`# The lab internet's MQTT broker (mosquitto), written by pinhole lab up.
# MQTT over TLS on port %d, any client may connect; the certificate comes from
# the lab's CA (%s).
per_listener_settings false
allow_anonymous true
persistence false
# The user mosquitto runs as once it has opened its port.
user %s
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
listener %d
cafile %s
certfile %s
keyfile %s
`, MQTTPort, caFile, runAs, MQTTPort, caFile, certFile, keyFile)
}
