package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Rulesets reads pinhole's table from the kernel: one Ruleset per base chain
// (INPUT, FORWARD, OUTPUT filter, OUTPUT nat), each with the base chain's
// rules followed by those of the regular chains that belong to it, with
// their counters. It needs no policy, so `pinhole firewall show` can use it
// on a table another process installed. With no table it returns nil.
func (f *Firewall) Rulesets() ([]Ruleset, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return nil, os.ErrClosed
	}
	rs, err := f.readRulesets()
	if err != nil {
		f.resetReader()
		return nil, fmt.Errorf("read rulesets: %w", err)
	}
	return rs, nil
}

func (f *Firewall) readRulesets() ([]Ruleset, error) {
	all, err := f.rd.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, err
	}
	var chains []*nftables.Chain
	for _, c := range all {
		if c.Table != nil && c.Table.Name == TableName {
			chains = append(chains, c)
		}
	}
	if len(chains) == 0 {
		return nil, nil
	}
	anon := map[string][]nftables.SetElement{}
	sets, err := f.rd.GetSets(table)
	if err != nil {
		return nil, err
	}
	for _, s := range sets {
		if !s.Anonymous {
			continue
		}
		s.Table = table
		elems, err := f.rd.GetSetElements(s)
		if err != nil {
			return nil, err
		}
		anon[s.Name] = elems
	}
	rules, err := dumpRules(f.opts.NetNSFd)
	if err != nil {
		return nil, err
	}
	return assemble(chains, rules, anon), nil
}

// dumpRules reads every rule of the table in one dump. google/nftables
// v0.3.0 silently drops expressions it does not know (socket among them) and
// fails on others, so rules are decoded here.
func dumpRules(netnsFd int) (map[string][]*nftables.Rule, error) {
	cfg := &netlink.Config{}
	if netnsFd > 0 {
		cfg.NetNS = netnsFd
	}
	nl, err := netlink.Dial(unix.NETLINK_NETFILTER, cfg)
	if err != nil {
		return nil, fmt.Errorf("open netfilter netlink socket: %w", err)
	}
	defer nl.Close()
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_RULE_TABLE, Data: []byte(TableName + "\x00")}})
	if err != nil {
		return nil, err
	}
	msgs, err := nl.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETRULE),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: append([]byte{unix.NFPROTO_INET, unix.NFNETLINK_V0, 0, 0}, attrs...),
	})
	if err != nil {
		return nil, fmt.Errorf("dump rules: %w", err)
	}
	out := map[string][]*nftables.Rule{}
	for _, m := range msgs {
		chain, r, err := parseRule(m.Data)
		if err != nil {
			return nil, fmt.Errorf("parse rule: %w", err)
		}
		out[chain] = append(out[chain], r)
	}
	return out, nil
}

func parseRule(b []byte) (string, *nftables.Rule, error) {
	if len(b) < 4 {
		return "", nil, errors.New("short message")
	}
	ad, err := netlink.NewAttributeDecoder(b[4:])
	if err != nil {
		return "", nil, err
	}
	ad.ByteOrder = binary.BigEndian
	var (
		chain string
		r     nftables.Rule
	)
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_RULE_CHAIN:
			chain = ad.String()
		case unix.NFTA_RULE_HANDLE:
			r.Handle = ad.Uint64()
		case unix.NFTA_RULE_USERDATA:
			r.UserData = ad.Bytes()
		case unix.NFTA_RULE_EXPRESSIONS:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					nad.Nested(func(ead *netlink.AttributeDecoder) error {
						e, err := parseExpr(ead)
						if err == nil {
							r.Exprs = append(r.Exprs, e)
						}
						return err
					})
				}
				return nil
			})
		}
	}
	return chain, &r, ad.Err()
}

// unknownExpr stands for an expression pinhole does not decode.
type unknownExpr struct {
	expr.Any
	name string
}

func parseExpr(ad *netlink.AttributeDecoder) (expr.Any, error) {
	var (
		name string
		data []byte
	)
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_EXPR_NAME:
			name = ad.String()
		case unix.NFTA_EXPR_DATA:
			data = ad.Bytes()
		}
	}
	var e expr.Any
	switch name {
	case "meta":
		e = &expr.Meta{}
	case "payload":
		e = &expr.Payload{}
	case "cmp":
		e = &expr.Cmp{}
	case "bitwise":
		e = &expr.Bitwise{}
	case "lookup":
		e = &expr.Lookup{}
	case "counter":
		e = &expr.Counter{}
	case "limit":
		e = &expr.Limit{}
	case "log":
		e = &expr.Log{}
	case "reject":
		e = &expr.Reject{}
	case "redir":
		e = &expr.Redir{}
	case "ct":
		e = &expr.Ct{}
	case "socket":
		e = &expr.Socket{}
	case "immediate":
		imm := &expr.Immediate{}
		if err := expr.Unmarshal(unix.NFPROTO_INET, data, imm); err == nil && imm.Register == regVerdict {
			e = &expr.Verdict{}
		} else {
			return imm, err
		}
	default:
		return &unknownExpr{name: name}, nil
	}
	if err := expr.Unmarshal(unix.NFPROTO_INET, data, e); err != nil {
		return &unknownExpr{name: name}, nil
	}
	return e, nil
}

// hookNames are Azure Sphere's names of the netfilter hooks.
var hookNames = map[nftables.ChainHook]string{
	*nftables.ChainHookPrerouting:  "PREROUTING",
	*nftables.ChainHookInput:       "INPUT",
	*nftables.ChainHookForward:     "FORWARD",
	*nftables.ChainHookOutput:      "OUTPUT",
	*nftables.ChainHookPostrouting: "POSTROUTING",
}

// owner tells which base chain a regular chain belongs to.
func owner(chain string) string {
	switch {
	case strings.HasPrefix(chain, prefixIn):
		return chainInput
	case strings.HasPrefix(chain, prefixOut), chain == chainUIDServer:
		return chainOutput
	case chain == chainDNS:
		return chainNATOutput
	}
	return ""
}

// assemble groups decoded rules into rulesets.
func assemble(chains []*nftables.Chain, rules map[string][]*nftables.Rule, anon map[string][]nftables.SetElement) []Ruleset {
	var out []Ruleset
	index := map[string]int{}
	for _, c := range chains {
		if c.Hooknum == nil {
			continue
		}
		rs := Ruleset{Hook: hookNames[*c.Hooknum], IsValid: true, Type: string(c.Type), Chain: c.Name, Policy: "accept"}
		if c.Policy != nil && *c.Policy == nftables.ChainPolicyDrop {
			rs.Policy = "drop"
		}
		index[c.Name] = len(out)
		out = append(out, rs)
	}
	add := func(c *nftables.Chain, i int) {
		for _, r := range rules[c.Name] {
			d, ok := decodeRule(c.Name, r, anon)
			out[i].Rules = append(out[i].Rules, d)
			out[i].IsValid = out[i].IsValid && ok
		}
	}
	for _, c := range chains {
		if i, ok := index[c.Name]; ok {
			add(c, i)
		}
	}
	for _, c := range chains {
		if c.Hooknum != nil {
			continue
		}
		i, ok := index[owner(c.Name)]
		if !ok {
			continue
		}
		add(c, i)
	}
	order := map[string]int{"INPUT": 0, "FORWARD": 1, "OUTPUT": 2}
	slices.SortStableFunc(out, func(a, b Ruleset) int {
		if d := order[a.Hook] - order[b.Hook]; d != 0 {
			return d
		}
		return strings.Compare(typeOrder(a.Type), typeOrder(b.Type))
	})
	return out
}

func typeOrder(t string) string {
	if t == string(nftables.ChainTypeFilter) {
		return "0"
	}
	return "1" + t
}

// load is a value an expression put in a register, waiting for a compare
// or lookup.
type load struct {
	what string // nft's name for it, e.g. "ip daddr"
	mask []byte
}

// ruleDecoder renders a rule's expressions into nft-like text and the Azure
// Sphere fields.
type ruleDecoder struct {
	r     Rule
	anon  map[string][]nftables.SetElement
	loads []load
	fam   byte // nfproto context
	l4    byte // l4proto context
	parts []string
	ok    bool
}

func decodeRule(chain string, nr *nftables.Rule, anon map[string][]nftables.SetElement) (Rule, bool) {
	d := &ruleDecoder{anon: anon, ok: true}
	d.r = Rule{Chain: chain, Handle: nr.Handle, Protocol: "any"}
	if c, ok := userdata.GetString(nr.UserData, userdata.TypeComment); ok {
		d.r.Comment = c
	}
	if app, ok := strings.CutPrefix(chain, prefixOut); ok {
		d.r.App = app
	} else if app, ok := strings.CutPrefix(chain, prefixIn); ok {
		d.r.App = app
	}
	for _, e := range nr.Exprs {
		d.expr(e)
	}
	if d.r.Action == "" {
		d.r.Action = "continue"
	}
	d.r.Match = strings.Join(d.parts, " ")
	// nft leaves out the protocol match that tcp/udp/icmpv6 fields imply.
	for _, p := range []string{"tcp", "udp", "icmpv6"} {
		d.r.Match = strings.ReplaceAll(d.r.Match, "meta l4proto "+p+" "+p+" ", p+" ")
	}
	return d.r, d.ok
}

func (d *ruleDecoder) push(what string) { d.loads = append(d.loads, load{what: what}) }

func (d *ruleDecoder) take() []load {
	l := d.loads
	d.loads = nil
	return l
}

func (d *ruleDecoder) names(ls []load) string {
	s := make([]string, len(ls))
	for i, l := range ls {
		s[i] = l.what
	}
	return strings.Join(s, " . ")
}

func (d *ruleDecoder) expr(e expr.Any) {
	switch e := e.(type) {
	case *expr.Meta:
		d.push(metaName(e.Key))
	case *expr.Payload:
		d.push(d.payloadName(e))
	case *expr.Ct:
		d.push(ctName(e))
	case *expr.Socket:
		if e.Key == expr.SocketKeyCgroupv2 {
			d.push(fmt.Sprintf("socket cgroupv2 level %d", e.Level))
		} else {
			d.push(fmt.Sprintf("socket key %d", e.Key))
		}
	case *expr.Bitwise:
		if len(d.loads) > 0 {
			d.loads[len(d.loads)-1].mask = e.Mask
		}
	case *expr.Cmp:
		d.cmp(e)
	case *expr.Lookup:
		d.lookup(e)
	case *expr.Immediate:
		if len(e.Data) == 2 {
			d.push(strconv.Itoa(int(binary.BigEndian.Uint16(e.Data))))
		} else {
			d.push(fmt.Sprintf("0x%x", e.Data))
		}
	case *expr.Counter:
		d.r.Packets, d.r.Bytes = e.Packets, e.Bytes
	case *expr.Limit:
		d.parts = append(d.parts, fmt.Sprintf("limit rate %d/second burst %d packets", e.Rate, e.Burst))
	case *expr.Log:
		d.parts = append(d.parts, fmt.Sprintf("log prefix %q group %d", strings.TrimRight(string(e.Data), "\x00"), e.Group))
		d.r.Action = "log"
	case *expr.Reject:
		d.r.Action = "reject"
		switch {
		case e.Type == unix.NFT_REJECT_TCP_RST:
			d.parts = append(d.parts, "reject with tcp reset")
		case e.Type == unix.NFT_REJECT_ICMPX_UNREACH && e.Code == unix.NFT_REJECT_ICMPX_ADMIN_PROHIBITED:
			d.parts = append(d.parts, "reject with icmpx admin-prohibited")
		default:
			d.parts = append(d.parts, fmt.Sprintf("reject type %d code %d", e.Type, e.Code))
		}
	case *expr.Redir:
		d.r.Action = "redirect"
		d.parts = append(d.parts, "redirect to :"+d.names(d.take()))
	case *expr.Verdict:
		d.verdict(e)
	case *unknownExpr:
		d.ok = false
		d.parts = append(d.parts, "["+e.name+"]")
	default:
		d.ok = false
		d.parts = append(d.parts, fmt.Sprintf("[%T]", e))
	}
}

func (d *ruleDecoder) verdict(v *expr.Verdict) {
	switch v.Kind {
	case expr.VerdictAccept:
		d.r.Action = "accept"
	case expr.VerdictDrop:
		d.r.Action = "drop"
	case expr.VerdictReturn:
		d.r.Action = "return"
	case expr.VerdictJump:
		d.r.Action, d.r.Target = "jump", v.Chain
	case expr.VerdictGoto:
		d.r.Action, d.r.Target = "goto", v.Chain
	default:
		d.r.Action = fmt.Sprintf("verdict %d", v.Kind)
		d.ok = false
	}
	s := d.r.Action
	if d.r.Target != "" {
		s += " " + d.r.Target
	}
	d.parts = append(d.parts, s)
}

func (d *ruleDecoder) lookup(e *expr.Lookup) {
	ls := d.take()
	names := d.names(ls)
	switch {
	case e.IsDestRegSet && e.DestRegister == regVerdict:
		d.r.Action, d.r.Set = "vmap", e.SetName
		d.parts = append(d.parts, names+" vmap @"+e.SetName)
	case e.IsDestRegSet:
		d.r.Set = e.SetName
		d.loads = []load{{what: names + " map @" + e.SetName}}
	default:
		set := "@" + e.SetName
		if elems, ok := d.anon[e.SetName]; ok && len(ls) == 1 {
			vals := make([]string, len(elems))
			for i, el := range elems {
				vals[i] = d.value(ls[0], el.Key)
			}
			slices.Sort(vals)
			set = "{ " + strings.Join(vals, ", ") + " }"
			d.fields(ls[0].what, vals)
		} else {
			d.r.Set = e.SetName
		}
		not := ""
		if e.Invert {
			not = "!= "
		}
		d.parts = append(d.parts, names+" "+not+set)
	}
}

func (d *ruleDecoder) cmp(e *expr.Cmp) {
	ls := d.take()
	if len(ls) != 1 {
		d.ok = false
		d.parts = append(d.parts, "[cmp]")
		return
	}
	l := ls[0]
	if l.what == "meta nfproto" && len(e.Data) == 1 && e.Op == expr.CmpOpEq {
		d.fam = e.Data[0] // implied by "ip"/"ip6" in the text
		return
	}
	val := d.value(l, e.Data)
	op := map[expr.CmpOp]string{expr.CmpOpEq: "", expr.CmpOpNeq: "!= ", expr.CmpOpLt: "< ", expr.CmpOpLte: "<= ", expr.CmpOpGt: "> ", expr.CmpOpGte: ">= "}[e.Op]
	if l.mask != nil && (strings.HasPrefix(l.what, "ct ") || l.what == "tcp flags") {
		// Flag tests: "ct state established,related", "ct status ! dnat".
		switch {
		case e.Op == expr.CmpOpNeq && allZero(e.Data):
			val, op = d.value(load{what: l.what}, l.mask), ""
		case e.Op == expr.CmpOpEq && allZero(e.Data):
			val, op = d.value(load{what: l.what}, l.mask), "! "
		default:
			val = d.value(load{what: l.what}, e.Data) + " / " + d.value(load{what: l.what}, l.mask)
		}
	}
	if e.Op == expr.CmpOpEq {
		d.fields(l.what, []string{val})
		if l.what == "meta skuid" && len(e.Data) == 4 {
			uid := binary.NativeEndian.Uint32(e.Data)
			d.r.UID = &uid
		}
		if strings.HasSuffix(l.what, "addr") {
			d.addrField(l, e.Data)
		}
	}
	if l.what == "ct state" && op == "" {
		d.r.State = val
	}
	d.parts = append(d.parts, l.what+" "+op+val)
}

// fields fills the Azure Sphere fields a match maps to.
func (d *ruleDecoder) fields(what string, vals []string) {
	switch what {
	case "meta l4proto":
		d.r.Protocol = strings.Join(vals, ",")
		if len(vals) == 1 {
			d.l4 = map[string]byte{"tcp": protoTCP, "udp": protoUDP}[vals[0]]
		}
	case "iif", "iifname":
		d.r.InterfaceInName = unquote(vals[0])
	case "oif", "oifname":
		d.r.InterfaceOutName = unquote(vals[0])
	case "udp sport", "tcp sport", "th sport", "udp dport", "tcp dport", "th dport":
		if len(vals) != 1 {
			return
		}
		p, err := strconv.ParseUint(vals[0], 10, 16)
		if err != nil {
			return
		}
		pr := &PortRange{Min: uint16(p), Max: uint16(p)}
		if strings.HasSuffix(what, "sport") {
			d.r.SourcePortRange = pr
		} else {
			d.r.DestinationPortRange = pr
		}
	}
}

func (d *ruleDecoder) addrField(l load, data []byte) {
	a, ok := netip.AddrFromSlice(data)
	if !ok {
		return
	}
	mask := l.mask
	if mask == nil {
		mask = slices.Repeat([]byte{0xff}, len(data))
	}
	m, _ := netip.AddrFromSlice(mask)
	if strings.HasSuffix(l.what, "saddr") {
		d.r.SourceIP, d.r.SourceMask = a.String(), m.String()
	} else {
		d.r.DestinationIP, d.r.DestinationMask = a.String(), m.String()
	}
}

func unquote(s string) string {
	if u, err := strconv.Unquote(s); err == nil {
		return u
	}
	return s
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

func metaName(k expr.MetaKey) string {
	switch k {
	case expr.MetaKeyL4PROTO:
		return "meta l4proto"
	case expr.MetaKeyNFPROTO:
		return "meta nfproto"
	case expr.MetaKeyIIF:
		return "iif"
	case expr.MetaKeyOIF:
		return "oif"
	case expr.MetaKeyIIFNAME:
		return "iifname"
	case expr.MetaKeyOIFNAME:
		return "oifname"
	case expr.MetaKeyMARK:
		return "meta mark"
	case expr.MetaKeySKUID:
		return "meta skuid"
	case expr.MetaKeySKGID:
		return "meta skgid"
	}
	return fmt.Sprintf("meta key %d", k)
}

func ctName(e *expr.Ct) string {
	switch e.Key {
	case expr.CtKeySTATE:
		return "ct state"
	case expr.CtKeySTATUS:
		return "ct status"
	case expr.CtKeyDIRECTION:
		return "ct direction"
	case expr.CtKeyPROTODST:
		return [2]string{"ct original proto-dst", "ct reply proto-dst"}[e.Direction&1]
	case expr.CtKeyPROTOSRC:
		return [2]string{"ct original proto-src", "ct reply proto-src"}[e.Direction&1]
	}
	return fmt.Sprintf("ct key %d", e.Key)
}

func (d *ruleDecoder) payloadName(e *expr.Payload) string {
	switch e.Base {
	case expr.PayloadBaseNetworkHeader:
		switch {
		case d.fam == nfprotoIPv4 && e.Offset == 12 && e.Len == 4:
			return "ip saddr"
		case d.fam == nfprotoIPv4 && e.Offset == 16 && e.Len == 4:
			return "ip daddr"
		case d.fam == nfprotoIPv6 && e.Offset == 8 && e.Len == 16:
			return "ip6 saddr"
		case d.fam == nfprotoIPv6 && e.Offset == 24 && e.Len == 16:
			return "ip6 daddr"
		}
	case expr.PayloadBaseTransportHeader:
		th := map[byte]string{protoTCP: "tcp", protoUDP: "udp"}[d.l4]
		if th == "" {
			th = "th"
		}
		switch {
		case e.Offset == 0 && e.Len == 2:
			return th + " sport"
		case e.Offset == 2 && e.Len == 2:
			return th + " dport"
		case e.Offset == 13 && e.Len == 1 && d.l4 == protoTCP:
			return "tcp flags"
		case e.Offset == 0 && e.Len == 1:
			return "icmpv6 type"
		}
	}
	return fmt.Sprintf("payload base %d offset %d len %d", e.Base, e.Offset, e.Len)
}

var icmpv6Names = map[byte]string{
	icmpv6MLDQuery: "mld-listener-query", icmpv6MLDReport: "mld-listener-report", icmpv6MLDDone: "mld-listener-done",
	icmpv6RouterSol: "nd-router-solicit", icmpv6RouterAdv: "nd-router-advert", icmpv6NeighSol: "nd-neighbor-solicit",
	icmpv6NeighAdv: "nd-neighbor-advert", icmpv6MLD2Report: "mld2-listener-report",
}

// value formats data as the type of what was loaded.
func (d *ruleDecoder) value(l load, data []byte) string {
	switch l.what {
	case "meta l4proto":
		if len(data) >= 1 {
			if s, ok := map[byte]string{protoTCP: "tcp", protoUDP: "udp", protoICMPv6: "icmpv6", unix.IPPROTO_ICMP: "icmp"}[data[0]]; ok {
				return s
			}
			return strconv.Itoa(int(data[0]))
		}
	case "iif", "oif":
		if len(data) == 4 {
			if i := binary.NativeEndian.Uint32(data); i == loopbackIfindex {
				return `"lo"`
			} else {
				return fmt.Sprintf("ifindex %d", i)
			}
		}
	case "iifname", "oifname":
		return strconv.Quote(strings.TrimRight(string(data), "\x00"))
	case "meta mark":
		if len(data) == 4 {
			return fmt.Sprintf("%#x", binary.NativeEndian.Uint32(data))
		}
	case "meta skuid", "meta skgid":
		if len(data) == 4 {
			return strconv.FormatUint(uint64(binary.NativeEndian.Uint32(data)), 10)
		}
	case "ct state":
		if len(data) == 4 {
			return flagNames(binary.NativeEndian.Uint32(data), []string{"invalid", "established", "related", "new"})
		}
	case "ct status":
		if len(data) == 4 {
			v := binary.NativeEndian.Uint32(data)
			if v == ipsDstNAT {
				return "dnat"
			}
			return fmt.Sprintf("%#x", v)
		}
	case "ct direction":
		if len(data) >= 1 {
			return [2]string{"original", "reply"}[data[0]&1]
		}
	case "tcp flags":
		if len(data) == 1 {
			return flagNames(uint32(data[0]), []string{"fin", "syn", "rst", "psh", "ack", "urg"})
		}
	case "icmpv6 type":
		if len(data) == 1 {
			if s, ok := icmpv6Names[data[0]]; ok {
				return s
			}
		}
	}
	switch {
	case (strings.HasSuffix(l.what, "port") || strings.HasSuffix(l.what, "proto-dst") || strings.HasSuffix(l.what, "proto-src")) && len(data) == 2:
		return strconv.Itoa(int(binary.BigEndian.Uint16(data)))
	case strings.HasSuffix(l.what, "addr"):
		if a, ok := netip.AddrFromSlice(data); ok {
			if l.mask != nil {
				ones := 0
				for _, b := range l.mask {
					for ; b&0x80 != 0; b <<= 1 {
						ones++
					}
				}
				return netip.PrefixFrom(a, ones).String()
			}
			return a.String()
		}
	case strings.HasPrefix(l.what, "socket cgroupv2") && len(data) == 8:
		return strconv.FormatUint(binary.NativeEndian.Uint64(data), 10)
	}
	return fmt.Sprintf("0x%x", data)
}

func flagNames(v uint32, names []string) string {
	var out []string
	for i, n := range names {
		if v&(1<<i) != 0 {
			out = append(out, n)
			v &^= 1 << i
		}
	}
	if v != 0 || len(out) == 0 {
		out = append(out, fmt.Sprintf("%#x", v))
	}
	return strings.Join(out, ",")
}
