package firewall

import (
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"

	"github.com/pinhole-net/pinhole/internal/logprefix"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// Global sets and maps. Dispatch to the app chains and DNS redirection use
// rules and plain sets, not maps: deleting the old table deactivates a map's
// elements for the next generation, and a packet that is inside the old
// rules when the transaction commits would then miss its app (seen as
// allowed traffic denied while re-applying). The two deny maps below only
// choose which app a denial is logged under.
const (
	setDNSStubs   = "dns_stubs"     // inet_service: the stubs' loopback ports
	setSrvUID     = "srv_uid"       // proto . port of UID apps (input accept)
	setSrvUIDOwn  = "srv_uid_owner" // proto . port . uid (output owner check)
	mapSrvUIDDeny = "srv_uid_deny"  // proto . port : goto in_<app>
	mapSrvCgDeny  = "srv_cg_deny"   // proto . port : goto in_<app>
	chainDNS      = "dns_redirect"  // nat: per-app redirects of port 53
	prefixCg      = "cg_"           // cg_<app>: the app's cgroup id (one element)
)

func setSrvCg(level int) string { return fmt.Sprintf("srv_cg_%d", level) } // proto . port . cgroup id
func cgSet(app string) string   { return prefixCg + app }

// maxElemBytes is the budget of one element list: google/nftables v0.3.0
// silently drops elements once the list passes 64 KiB.
const maxElemBytes = 48 << 10

var table = &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}

// builder adds pinhole's table to a transaction.
type builder struct {
	m      *model
	t      *txn
	nextID *uint32
	sets   map[string]*nftables.Set
}

func (b *builder) id() uint32 {
	*b.nextID++
	if *b.nextID == 0 {
		*b.nextID++
	}
	return *b.nextID
}

// buildTable fills t with the whole table for m plus the learned elements,
// replacing any table of that name: add (a no-op if it exists), delete, add.
func buildTable(t *txn, m *model, learned []Element, nextID *uint32) (map[string]*nftables.Set, error) {
	b := &builder{m: m, t: t, nextID: nextID, sets: map[string]*nftables.Set{}}
	err := t.do("replace table inet "+TableName, func(c *nftables.Conn) error {
		c.AddTable(table)
		c.DelTable(table)
		c.AddTable(table)
		return nil
	})
	if err != nil {
		return nil, err
	}
	steps := []func() error{b.chains, b.globalSets, b.appSets, b.serverElements}
	for _, f := range steps {
		if err := f(); err != nil {
			return nil, err
		}
	}
	if err := addAppElements(t, b.sets, append(slices.Clone(m.literals), learned...)); err != nil {
		return nil, err
	}
	for _, f := range []func() error{b.outputRules, b.uidServerRules, b.inputRules, b.forwardRules, b.natRules, b.identityRules} {
		if err := f(); err != nil {
			return nil, err
		}
	}
	return b.sets, nil
}

func (b *builder) chains() error {
	hook := func(name string, h *nftables.ChainHook, typ nftables.ChainType, prio *nftables.ChainPriority, pol nftables.ChainPolicy) *nftables.Chain {
		return &nftables.Chain{Name: name, Table: table, Hooknum: h, Type: typ, Priority: prio, Policy: &pol}
	}
	chains := []*nftables.Chain{
		hook(chainInput, nftables.ChainHookInput, nftables.ChainTypeFilter, nftables.ChainPriorityFilter, nftables.ChainPolicyDrop),
		hook(chainForward, nftables.ChainHookForward, nftables.ChainTypeFilter, nftables.ChainPriorityFilter, nftables.ChainPolicyDrop),
		hook(chainOutput, nftables.ChainHookOutput, nftables.ChainTypeFilter, nftables.ChainPriorityFilter, nftables.ChainPolicyDrop),
		hook(chainNATOutput, nftables.ChainHookOutput, nftables.ChainTypeNAT, nftables.ChainPriorityNATDest, nftables.ChainPolicyAccept),
	}
	chains = append(chains, &nftables.Chain{Name: chainDNS, Table: table})
	if b.m.uidSrv {
		chains = append(chains, &nftables.Chain{Name: chainUIDServer, Table: table})
	}
	for _, id := range b.m.idents {
		chains = append(chains, &nftables.Chain{Name: outChain(id.name), Table: table})
		if hasServerPorts(id.app) {
			chains = append(chains, &nftables.Chain{Name: inChain(id.name), Table: table})
		}
	}
	chains = append(chains,
		&nftables.Chain{Name: outChain(policy.UnmanagedName), Table: table},
		&nftables.Chain{Name: inChain(policy.UnmanagedName), Table: table})
	for _, c := range chains {
		if err := b.t.do("add chain "+c.Name, func(enc *nftables.Conn) error { enc.AddChain(c); return nil }); err != nil {
			return err
		}
	}
	return nil
}

// addSet declares a named set or map.
func (b *builder) addSet(s *nftables.Set) error {
	s.Table = table
	s.ID = b.id()
	b.sets[s.Name] = s
	return b.t.do("add set "+s.Name, func(c *nftables.Conn) error { return c.AddSet(s, nil) })
}

// anon declares an anonymous constant set for one rule.
func (b *builder) anon(keyType nftables.SetDatatype, keys ...[]byte) (*nftables.Set, error) {
	s := &nftables.Set{Table: table, Name: "__set%d", ID: b.id(), Anonymous: true, Constant: true, KeyType: keyType}
	elems := make([]nftables.SetElement, len(keys))
	for i, k := range keys {
		elems[i] = nftables.SetElement{Key: k}
	}
	return s, b.t.do("add anonymous set", func(c *nftables.Conn) error { return c.AddSet(s, elems) })
}

func (b *builder) globalSets() error {
	m := b.m
	var sets []*nftables.Set
	if len(m.stubPorts) > 0 {
		sets = append(sets, &nftables.Set{Name: setDNSStubs, KeyType: nftables.TypeInetService})
	}
	if m.uidSrv {
		sets = append(sets,
			&nftables.Set{Name: setSrvUID, KeyType: typeProtoPort, Concatenation: true},
			&nftables.Set{Name: setSrvUIDOwn, KeyType: typeProtoPortUID, Concatenation: true},
			&nftables.Set{Name: mapSrvUIDDeny, IsMap: true, KeyType: typeProtoPort, DataType: nftables.TypeVerdict, Concatenation: true})
	}
	if m.cgSrv {
		sets = append(sets, &nftables.Set{Name: mapSrvCgDeny, IsMap: true, KeyType: typeProtoPort, DataType: nftables.TypeVerdict, Concatenation: true})
	}
	for _, l := range m.srvLevels {
		sets = append(sets, &nftables.Set{Name: setSrvCg(l), KeyType: typeProtoPortCg, Concatenation: true})
	}
	for _, s := range sets {
		if err := b.addSet(s); err != nil {
			return err
		}
	}
	if len(m.stubPorts) > 0 {
		elems := make([]nftables.SetElement, len(m.stubPorts))
		for i, p := range m.stubPorts {
			elems[i] = nftables.SetElement{Key: be16(p)}
		}
		return b.addElems(b.sets[setDNSStubs], elems, "dns stub ports")
	}
	return nil
}

// appSets declares the four address sets of every identity, and for apps
// identified by cgroup the set holding the cgroup's id.
func (b *builder) appSets() error {
	for _, id := range b.m.idents {
		for _, k := range setKinds {
			if err := b.addSet(newAppSet(id.name, k)); err != nil {
				return err
			}
		}
		if id.kind != policy.ByCgroup {
			continue
		}
		s := &nftables.Set{Name: cgSet(id.name), KeyType: nftables.TypeCGroupV2, KeyByteOrder: binaryutil.NativeEndian}
		if err := b.addSet(s); err != nil {
			return err
		}
		if id.cgID != 0 {
			if err := b.addElems(s, []nftables.SetElement{{Key: ne64(id.cgID)}}, "cgroup id"); err != nil {
				return err
			}
		}
	}
	return nil
}

func newAppSet(app string, k setKind) *nftables.Set {
	s := &nftables.Set{Name: appSet(app, k), HasTimeout: true, KeyByteOrder: binaryutil.BigEndian}
	switch k {
	case setV4:
		s.KeyType = nftables.TypeIPAddr
	case setV6:
		s.KeyType = nftables.TypeIP6Addr
	case setV4Port:
		s.KeyType, s.Concatenation = typeV4Port, true
	case setV6Port:
		s.KeyType, s.Concatenation = typeV6Port, true
	}
	return s
}

func gotoElem(key []byte, chain string) nftables.SetElement {
	return nftables.SetElement{Key: key, VerdictData: &expr.Verdict{Kind: expr.VerdictGoto, Chain: chain}}
}

func cgSrvElems(id *ident) []nftables.SetElement {
	var out []nftables.SetElement
	for _, ps := range serverPorts(id.app) {
		out = append(out, nftables.SetElement{Key: append(keyProtoPort(uint8(ps.Proto), ps.Port), ne64(id.cgID)...)})
	}
	return out
}

// serverElements fills the server-port sets. When two apps declare the same
// port, both may answer, and denials are logged under the first.
func (b *builder) serverElements() error {
	var uidIn, uidOwn, uidDeny, cgDeny []nftables.SetElement
	cgIn := map[int][]nftables.SetElement{}
	seenUID := map[policy.PortSpec]bool{}
	seenCg := map[policy.PortSpec]bool{}
	for _, id := range b.m.idents {
		for _, ps := range serverPorts(id.app) {
			pp := keyProtoPort(uint8(ps.Proto), ps.Port)
			switch id.kind {
			case policy.ByUID:
				uidOwn = append(uidOwn, nftables.SetElement{Key: append(slices.Clone(pp), ne32(id.app.Identity.UID)...)})
				if !seenUID[ps] {
					seenUID[ps] = true
					uidIn = append(uidIn, nftables.SetElement{Key: pp})
					uidDeny = append(uidDeny, gotoElem(pp, inChain(id.name)))
				}
			case policy.ByCgroup:
				if !seenCg[ps] {
					seenCg[ps] = true
					cgDeny = append(cgDeny, gotoElem(pp, inChain(id.name)))
				}
			}
		}
		if id.kind == policy.ByCgroup && id.cgID != 0 {
			cgIn[id.level] = append(cgIn[id.level], cgSrvElems(id)...)
		}
	}
	for _, x := range []struct {
		set   string
		elems []nftables.SetElement
	}{{setSrvUID, uidIn}, {setSrvUIDOwn, uidOwn}, {mapSrvUIDDeny, uidDeny}, {mapSrvCgDeny, cgDeny}} {
		if err := b.addElems(b.sets[x.set], x.elems, "server ports"); err != nil {
			return err
		}
	}
	for _, l := range b.m.srvLevels {
		if err := b.addElems(b.sets[setSrvCg(l)], cgIn[l], "cgroup server ports"); err != nil {
			return err
		}
	}
	return nil
}

// addAppElements groups elems by set and adds them in chunks to sets
// created in the same transaction.
func addAppElements(t *txn, sets map[string]*nftables.Set, elems []Element) error {
	bySet := map[string][]nftables.SetElement{}
	var order []string
	for _, e := range elems {
		name := appSet(e.App, e.kindOf())
		if _, ok := bySet[name]; !ok {
			order = append(order, name)
		}
		bySet[name] = append(bySet[name], e.setElement())
	}
	for _, name := range order {
		s := sets[name]
		if s == nil {
			return fmt.Errorf("no set %s", name)
		}
		for _, chunk := range chunkElems(s, bySet[name]) {
			desc := fmt.Sprintf("add %d elements to %s", len(chunk), name)
			if err := t.do(desc, func(c *nftables.Conn) error { return c.SetAddElements(s, chunk) }); err != nil {
				return err
			}
		}
	}
	return nil
}

// removeElems deletes elements whether or not they are present: adding
// first makes the delete always find them.
func removeElems(t *txn, s *nftables.Set, elems []nftables.SetElement, desc string) error {
	for _, chunk := range chunkElems(s, elems) {
		err := t.do(desc, func(c *nftables.Conn) error {
			if err := c.SetAddElements(s, chunk); err != nil {
				return err
			}
			return c.SetDeleteElements(s, chunk)
		})
		if err != nil {
			return err
		}
	}
	return nil
}

func (b *builder) addElems(s *nftables.Set, elems []nftables.SetElement, what string) error {
	if s == nil || len(elems) == 0 {
		return nil
	}
	for _, chunk := range chunkElems(s, elems) {
		desc := fmt.Sprintf("add %d %s elements to %s", len(chunk), what, s.Name)
		if err := b.t.do(desc, func(c *nftables.Conn) error { return c.SetAddElements(s, chunk) }); err != nil {
			return err
		}
	}
	return nil
}

func (e Element) setElement() nftables.SetElement {
	var key []byte
	if e.Port == 0 {
		key = e.Addr.AsSlice()
	} else {
		key = keyAddrPort(e.Addr, uint8(e.Proto), e.Port)
	}
	return nftables.SetElement{Key: key, Timeout: e.Timeout}
}

// attrLen is the size of a netlink attribute with n bytes of payload.
func attrLen(n int) int { return 4 + align4(n) }

// elemBytes is the encoded size of one element in a NEWSETELEM message, as
// google/nftables v0.3.0 lays it out.
func elemBytes(s *nftables.Set, e nftables.SetElement) int {
	n := attrLen(attrLen(len(e.Key)))
	if s.HasTimeout && e.Timeout != 0 {
		n += attrLen(8)
	}
	switch {
	case e.VerdictData != nil:
		v := attrLen(4)
		if e.VerdictData.Chain != "" {
			v += attrLen(len(e.VerdictData.Chain) + 1)
		}
		n += attrLen(attrLen(v))
	case len(e.Val) > 0:
		n += attrLen(attrLen(len(e.Val)))
	}
	return attrLen(n)
}

// chunkElems splits elems into lists of at most maxElemBytes each.
func chunkElems(s *nftables.Set, elems []nftables.SetElement) [][]nftables.SetElement {
	return chunkBy(elems, func(e nftables.SetElement) int { return elemBytes(s, e) })
}

// chunkBy splits elems into runs whose sizes add up to at most maxElemBytes
// (a single larger element gets a run of its own).
func chunkBy[E any](elems []E, size func(E) int) [][]E {
	var out [][]E
	start, total := 0, 0
	for i, e := range elems {
		n := size(e)
		if total+n > maxElemBytes && i > start {
			out = append(out, elems[start:i])
			start, total = i, 0
		}
		total += n
	}
	if start < len(elems) {
		out = append(out, elems[start:])
	}
	return out
}

// rule appends a rule: the matches, a counter, then the action. Every rule
// carries its comment as nft's comment user data.
func (b *builder) rule(chain, comment string, match []expr.Any, action ...expr.Any) error {
	exprs := make([]expr.Any, 0, len(match)+1+len(action))
	exprs = append(exprs, match...)
	exprs = append(exprs, counter())
	exprs = append(exprs, action...)
	r := &nftables.Rule{
		Table:    table,
		Chain:    &nftables.Chain{Name: chain, Table: table},
		Exprs:    exprs,
		UserData: userdata.AppendString(nil, userdata.TypeComment, comment),
	}
	return b.t.do(fmt.Sprintf("add rule to %s (%s)", chain, comment), func(c *nftables.Conn) error { c.AddRule(r); return nil })
}

type ruleSpec struct {
	comment string
	match   []expr.Any
	action  []expr.Any
}

func (b *builder) rules(chain string, specs []ruleSpec) error {
	for _, r := range specs {
		if err := b.rule(chain, r.comment, r.match, r.action...); err != nil {
			return err
		}
	}
	return nil
}

func cat(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func acts(a ...expr.Any) []expr.Any { return a }

// matchTCPUDP matches TCP and UDP through an anonymous set.
func (b *builder) matchTCPUDP() ([]expr.Any, error) {
	s, err := b.anon(nftables.TypeInetProto, []byte{protoTCP}, []byte{protoUDP})
	if err != nil {
		return nil, err
	}
	return []expr.Any{&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1}, lookup(1, s)}, nil
}

func (b *builder) matchICMPv6Types(types ...byte) ([]expr.Any, error) {
	keys := make([][]byte, len(types))
	for i, t := range types {
		keys[i] = []byte{t}
	}
	s, err := b.anon(nftables.TypeICMP6Type, keys...)
	if err != nil {
		return nil, err
	}
	return append(matchL4(protoICMPv6),
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		lookup(1, s)), nil
}

// matchStubPort matches TCP or UDP to one of the stubs' ports.
func (b *builder) matchStubPort() ([]expr.Any, error) {
	tu, err := b.matchTCPUDP()
	if err != nil {
		return nil, err
	}
	return append(tu, loadTH(thDport, 1), lookup(1, b.sets[setDNSStubs])), nil
}

var (
	accept = acts(verdict(expr.VerdictAccept))
	drop   = acts(verdict(expr.VerdictDrop))
)

func (b *builder) outputRules() error {
	m := b.m
	var specs []ruleSpec
	if len(m.stubPorts) > 0 {
		direct, err := b.matchStubPort()
		if err != nil {
			return err
		}
		// A stub knows the app by its port, so only our redirect may reach it.
		spec := ruleSpec{"dns: a stub port takes only redirected queries", cat(matchOIFLo(), direct, matchNotDNAT()),
			acts(rejectAdminProhibited())}
		if m.p.Mode == policy.ModeAudit {
			spec.comment = "dns: a stub port takes only redirected queries (audit: log)"
			spec.action = acts(limit(m.logRate, m.logBurst), logTo(m.p.NFLOGGroup, m.prefix(logprefix.Out, policy.UnmanagedName)))
		}
		specs = append(specs, spec)
	}
	specs = append(specs, ruleSpec{"loopback", matchOIFLo(), accept})
	if m.uidSrv {
		specs = append(specs, ruleSpec{"answers of server ports of apps by uid: check the owner",
			matchCtReply(), acts(jumpTo(expr.VerdictJump, chainUIDServer))})
	}
	specs = append(specs,
		ruleSpec{"established and related", matchCtState(ctStateEstablished | ctStateRelated), accept},
		ruleSpec{"invalid", matchCtState(ctStateInvalid), drop})
	if len(m.stubPorts) > 0 {
		for _, lo := range []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.IPv6Loopback()} {
			sp, err := b.matchStubPort()
			if err != nil {
				return err
			}
			specs = append(specs, ruleSpec{"dns: queries redirected to the app's stub (" + lo.String() + ")",
				cat(sp, matchAddr(false, netip.PrefixFrom(lo, lo.BitLen())), matchDNAT()), accept})
		}
	}
	icmp, err := b.matchICMPv6Types(icmpv6RouterSol, icmpv6NeighSol, icmpv6NeighAdv, icmpv6MLDReport, icmpv6MLDDone, icmpv6MLD2Report)
	if err != nil {
		return err
	}
	specs = append(specs,
		ruleSpec{"dhcp client", matchUDPPorts(68, 67), accept},
		ruleSpec{"dhcpv6 client", matchUDPPorts(546, 547), accept},
		ruleSpec{"icmpv6 neighbour discovery and multicast listener reports", icmp, accept})
	if m.p.System != nil {
		specs = append(specs, ruleSpec{"system: pinholed's own sockets (mark)", matchMark(m.p.SystemMark),
			acts(jumpTo(expr.VerdictGoto, outChain(policy.SystemName)))})
	}
	for _, id := range m.dispatchOrder() {
		specs = append(specs, ruleSpec{"app " + id.name + ": " + id.app.Identity.String(), b.matchIdent(id),
			acts(jumpTo(expr.VerdictGoto, outChain(id.name)))})
	}
	specs = append(specs, ruleSpec{"no app: unmanaged", nil, acts(jumpTo(expr.VerdictGoto, outChain(policy.UnmanagedName)))})
	return b.rules(chainOutput, specs)
}

// uidServerRules check who answers on a UID app's server port: nftables
// cannot see a socket's owner on input, so the SYN-ACK (TCP) or the reply
// (UDP) is checked on output instead.
func (b *builder) uidServerRules() error {
	if !b.m.uidSrv {
		return nil
	}
	owner := cat(loadProtoPort(thSport), []expr.Any{&expr.Meta{Key: expr.MetaKeySKUID, Register: reg32 + 2}, lookup(reg32, b.sets[setSrvUIDOwn])})
	return b.rules(chainUIDServer, []ruleSpec{
		{"tcp: only the SYN-ACK is checked", matchSynAck(expr.CmpOpNeq), acts(verdict(expr.VerdictReturn))},
		{"answer from the app that declared the port", owner, acts(verdict(expr.VerdictReturn))},
		{"answer from another process", loadProtoPort(thSport), acts(vmap(reg32, b.sets[mapSrvUIDDeny]))},
	})
}

func (b *builder) inputRules() error {
	m := b.m
	icmp, err := b.matchICMPv6Types(icmpv6RouterAdv, icmpv6NeighSol, icmpv6NeighAdv, icmpv6MLDQuery)
	if err != nil {
		return err
	}
	specs := []ruleSpec{
		{"loopback", matchIIFLo(), accept},
		{"established and related", matchCtState(ctStateEstablished | ctStateRelated), accept},
		{"invalid", matchCtState(ctStateInvalid), drop},
		{"dhcp client: server replies", matchUDPPorts(67, 68), accept},
		{"dhcpv6 client: server replies", cat(matchAddr(true, netip.MustParsePrefix("fe80::/10")), matchUDPPorts(547, 546)), accept},
		{"icmpv6 neighbour discovery and multicast listener queries", icmp, accept},
	}
	if sl := m.p.ServiceLink; sl.Enabled {
		specs = append(specs, ruleSpec{"service link: api",
			cat(matchIIFName(sl.Interface), matchAddr(true, sl.Prefix), matchL4(protoTCP), matchTHPort(thDport, sl.APIPort)), accept})
	}
	if ml := m.p.MetricsListen; ml.IsValid() && !ml.Addr().IsLoopback() {
		match := cat(matchL4(protoTCP), matchTHPort(thDport, ml.Port()))
		if !ml.Addr().IsUnspecified() {
			a := ml.Addr().Unmap()
			match = cat(matchAddr(false, netip.PrefixFrom(a, a.BitLen())), match)
		}
		specs = append(specs, ruleSpec{"pinholed metrics (api.metrics_listen)", match, accept})
	}
	for _, l := range m.srvLevels {
		match := cat(loadProtoPort(thDport), []expr.Any{socketCgroup(l, reg32+2), lookup(reg32, b.sets[setSrvCg(l)])})
		specs = append(specs, ruleSpec{fmt.Sprintf("server ports of apps by cgroup (level %d)", l), match, accept})
	}
	if m.uidSrv {
		specs = append(specs, ruleSpec{"server ports of apps by uid (owner checked on output)",
			cat(loadProtoPort(thDport), []expr.Any{lookup(reg32, b.sets[setSrvUID])}), accept})
	}
	if m.cgSrv {
		specs = append(specs, ruleSpec{"server port of an app by cgroup, socket of another process",
			loadProtoPort(thDport), acts(vmap(reg32, b.sets[mapSrvCgDeny]))})
	}
	specs = append(specs, ruleSpec{"no app serves this", nil, acts(jumpTo(expr.VerdictGoto, inChain(policy.UnmanagedName)))})
	return b.rules(chainInput, specs)
}

func (b *builder) forwardRules() error {
	return b.rule(chainForward, "the device does not route", nil, verdict(expr.VerdictDrop))
}

// natRules redirect every app's DNS (port 53, UDP and TCP, to any address)
// to the app's stub. pinholed's own queries and unmanaged processes are left
// alone; the filter output chain decides on those.
func (b *builder) natRules() error {
	m := b.m
	var specs []ruleSpec
	if m.p.System != nil {
		specs = append(specs, ruleSpec{"system: never redirected", matchMark(m.p.SystemMark), accept})
	}
	tu, err := b.matchTCPUDP()
	if err != nil {
		return err
	}
	specs = append(specs, ruleSpec{"dns: to the app's stub", append(tu, matchTHPort(thDport, 53)...),
		acts(jumpTo(expr.VerdictJump, chainDNS))})
	if err := b.rules(chainNATOutput, specs); err != nil {
		return err
	}
	specs = specs[:0]
	for _, id := range m.dispatchOrder() {
		if id.app.DNSPort == 0 {
			continue
		}
		specs = append(specs, ruleSpec{fmt.Sprintf("app %s: to its stub", id.name), b.matchIdent(id),
			acts(&expr.Immediate{Register: 1, Data: be16(id.app.DNSPort)}, redirectToMapped())})
	}
	return b.rules(chainDNS, specs)
}

// matchIdent matches the sockets of an app.
func (b *builder) matchIdent(id *ident) []expr.Any {
	if id.kind == policy.ByUID {
		return matchSKUID(id.app.Identity.UID)
	}
	return []expr.Any{socketCgroup(id.level, 1), lookup(1, b.sets[cgSet(id.name)])}
}

// identityRules fill out_<app>, in_<app> and the unmanaged chains.
func (b *builder) identityRules() error {
	m := b.m
	for _, id := range m.idents {
		c := outChain(id.name)
		specs := []ruleSpec{
			{"allowed IPv4 destinations", matchDaddrIn(false, b.sets[appSet(id.name, setV4)]), accept},
			{"allowed IPv6 destinations", matchDaddrIn(true, b.sets[appSet(id.name, setV6)]), accept},
			{"allowed IPv4 destination ports", matchDaddrPortIn(false, b.sets[appSet(id.name, setV4Port)]), accept},
			{"allowed IPv6 destination ports", matchDaddrPortIn(true, b.sets[appSet(id.name, setV6Port)]), accept},
		}
		specs = append(specs, b.denyOut(id.name)...)
		if err := b.rules(c, specs); err != nil {
			return err
		}
		if hasServerPorts(id.app) {
			if err := b.rules(inChain(id.name), b.denyIn(id.name)); err != nil {
				return err
			}
		}
	}
	un := b.denyOut(policy.UnmanagedName)
	if m.p.Unmanaged == policy.UnmanagedAllow {
		un = []ruleSpec{{"unmanaged: allowed by config", nil, accept}}
	}
	if err := b.rules(outChain(policy.UnmanagedName), un); err != nil {
		return err
	}
	return b.rules(inChain(policy.UnmanagedName), b.denyIn(policy.UnmanagedName))
}

// denyOut ends an outbound chain: log (rate limited) and reject at once, so
// that the app sees an error instead of a hang; in audit mode log and accept.
func (b *builder) denyOut(who string) []ruleSpec {
	m := b.m
	log := acts(limit(m.logRate, m.logBurst), logTo(m.p.NFLOGGroup, m.prefix(logprefix.Out, who)))
	if m.p.Mode == policy.ModeAudit {
		return []ruleSpec{
			{"audit: log what enforce mode would deny", nil, log},
			{"audit: accept", nil, accept},
		}
	}
	return []ruleSpec{
		{"deny: log", nil, log},
		{"deny: tcp reset", matchL4(protoTCP), acts(rejectTCPReset())},
		{"deny: icmp administratively prohibited", nil, acts(rejectAdminProhibited())},
	}
}

// denyIn ends an inbound chain: log and drop (audit: log and accept).
func (b *builder) denyIn(who string) []ruleSpec {
	m := b.m
	log := acts(limit(m.logRate, m.logBurst), logTo(m.p.NFLOGGroup, m.prefix(logprefix.In, who)))
	if m.p.Mode == policy.ModeAudit {
		return []ruleSpec{
			{"audit: log what enforce mode would deny", nil, log},
			{"audit: accept", nil, accept},
		}
	}
	return []ruleSpec{
		{"deny: log", nil, log},
		{"deny: drop", nil, drop},
	}
}
