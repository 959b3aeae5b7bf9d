package api

import (
	"fmt"
	"net"
	"net/netip"
)

// ReadInterfaces lists the machine's network interfaces in Azure Sphere's
// shape. Loopback is left out, as the original shows only real links.
func ReadInterfaces() ([]Interface, error) {
	ifs, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	out := make([]Interface, 0, len(ifs))
	for _, ifc := range ifs {
		if ifc.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, err := ifc.Addrs()
		if err != nil {
			return nil, fmt.Errorf("addresses of %s: %w", ifc.Name, err)
		}
		out = append(out, interfaceOf(ifc, addrs))
	}
	return out, nil
}

// interfaceOf fills one Interface from what net reports.
func interfaceOf(ifc net.Interface, addrs []net.Addr) Interface {
	i := Interface{
		InterfaceName:      ifc.Name,
		InterfaceUp:        ifc.Flags&net.FlagUp != 0,
		ConnectedToNetwork: ifc.Flags&net.FlagRunning != 0,
		IPAddresses:        []string{},
	}
	if len(ifc.HardwareAddr) > 0 {
		hw := ifc.HardwareAddr.String()
		i.HardwareAddress = &hw
	}
	for _, a := range addrs {
		var ip net.IP
		switch v := a.(type) {
		case *net.IPNet:
			ip = v.IP
		case *net.IPAddr:
			ip = v.IP
		}
		addr, ok := netip.AddrFromSlice(ip)
		if !ok {
			continue
		}
		addr = addr.Unmap()
		i.IPAddresses = append(i.IPAddresses, addr.String())
		if !addr.IsLinkLocalUnicast() {
			i.IPAcquired = true
		}
	}
	return i
}
