// Package firewall turns a compiled policy into pinhole's nftables table,
// inet pinhole, and keeps the learned addresses in it. It talks netlink
// directly (google/nftables v0.3.0 only encodes the messages) and never runs
// the nft binary.
//
// # The table
//
// Apply replaces the whole table in one transaction (add table, delete
// table, add table, then everything): a stale table from a crashed run is
// dropped, never trusted, and at no moment is the namespace without rules.
// Learned elements are re-added, with their remaining timeouts, in the same
// transaction.
//
//	output   filter, policy drop
//	  stub port on lo without DNAT      reject  (a stub knows its app by port)
//	  oif lo                            accept
//	  ct direction reply                jump uid_srv (UID apps' server ports)
//	  ct state established,related      accept; invalid drop
//	  DNAT'ed to 127.0.0.1/::1 stub     accept  (oif is still the old device)
//	  DHCP, DHCPv6 client; ICMPv6 NDP (rs, ns, na) and MLD reports: accept
//	  meta mark SystemMark              goto out_system
//	  socket cgroupv2 level L @cg_<app> goto out_<app>  (one rule per app,
//	  meta skuid <uid>                  goto out_<app>   deepest cgroup first)
//	                                    goto out_unmanaged
//	out_<app>  ip daddr @v4_<app>, ip6 daddr @v6_<app>,
//	           daddr . l4proto . dport @v4p_<app>/@v6p_<app>: accept;
//	           limit + log group G "ph deny out <app>"; tcp reset; icmpx
//	           admin-prohibited (audit: log, accept)
//	input    filter, policy drop: lo, established, invalid drop, DHCP
//	         replies, NDP (ra, ns, na) and MLD queries, the service link's
//	         subnet to the API port, then server ports:
//	  l4proto . dport . socket cgroupv2 level L @srv_cg_L   accept
//	  l4proto . dport @srv_uid                              accept (owner
//	                                                        checked on output)
//	  l4proto . dport vmap @srv_cg_deny                     goto in_<app>
//	                                                        goto in_unmanaged
//	uid_srv  (reply direction) TCP: only SYN-ACKs; l4proto . sport . skuid
//	         @srv_uid_owner return; else vmap @srv_uid_deny -> in_<app>
//	in_<app> limit + log "ph deny in <app>", drop (audit: log, accept)
//	forward  policy drop
//	nat_output  nat, priority -100: mark SystemMark accept; tcp/udp dport 53
//	         jump dns_redirect: per app, its identity match, redirect to
//	         :<the app's stub port>
//
// Every rule has a counter and a comment; Rulesets reads them back per hook.
// All address sets have flags timeout: literal manifest addresses are
// permanent elements that Allow and Revoke never touch; learned ones carry
// the timeout Allow gives. An app identified by cgroup has a set cg_<app>
// holding its cgroup's id (SetCgroupID replaces it when the cgroup is
// recreated).
//
// Dispatch to the app chains is one rule per app, not a verdict map. Deleting
// the old table deactivates a map's elements for the next generation, and a
// packet that is inside the old rules at the moment the transaction commits
// then misses its app: re-applying in a loop under a probe showed about 0.5%
// of allowed datagrams denied that way. Plain sets are not deactivated
// element by element, and with rules the probe sees none (26,000 re-applies,
// 17,000 probes). The cost is a linear walk over the apps for the first
// packet of a flow. The two remaining maps (srv_uid_deny, srv_cg_deny) only
// choose the app a denial is logged under.
//
// # Limits
//
// nftables cannot see a socket's owner UID on input, so for apps identified
// by UID a server port is accepted on input and the answer is checked on
// output: a SYN-ACK from a listener of another UID is dropped (and logged as
// that app's inbound denial), so the connection never completes. For UDP the
// first datagram reaches whatever socket is bound to the port; only its
// answers are stopped. SYN cookies send SYN-ACKs without a socket, so under
// a SYN flood UID apps' listeners refuse connections (fail closed). Apps
// identified by cgroup are checked exactly on input.
//
// Precedence when a process matches several identities: the system mark,
// then the deepest cgroup, then the UID.
//
// Audit mode still drops conntrack-invalid packets and forwarded packets:
// neither is an app's decision.
//
// The DHCP client rules let any process with source port 68 (546) reach port
// 67 (547); binding those ports needs privilege.
//
// # Netlink
//
// google/nftables v0.3.0 silently truncates a set element list above 64 KiB,
// so elements go in chunks of at most 48 KiB. Its Flush asks for an echo of
// every rule and an ack of every message and overflows the socket's receive
// buffer with a few hundred rules, so pinhole sends each transaction itself:
// one sendmsg (SO_SNDBUFFORCE raised to fit), an ack asked only of the last
// message, and the kernel's errors attributed to the message that caused
// them; reading stops at that ack, so a successful batch costs one sendmsg
// and one recvmsg on a socket kept open. Allow encodes its element messages
// itself and sets each element's expiry to exactly its timeout: on Linux
// 6.12 and later with one add carrying timeout and expiration (the kernel
// then updates an existing element in place); on older kernels, which keep
// the old expiry of an element added again, with add, delete, add in one
// batch. Updates larger than 8 MiB are split into several transactions,
// each complete for its chunks. Apply is always one transaction.
package firewall
