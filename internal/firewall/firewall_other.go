//go:build !linux

package firewall

import (
	"errors"

	"github.com/pinhole-net/pinhole/internal/policy"
)

// Firewall needs Linux; elsewhere New fails.
type Firewall struct{}

// New fails: nftables is Linux only.
func New(Options) (*Firewall, error) { return nil, errors.ErrUnsupported }

func (*Firewall) Apply(*policy.Policy, []Element) error { return errors.ErrUnsupported }
func (*Firewall) Allow([]Element) error                 { return errors.ErrUnsupported }
func (*Firewall) Revoke([]Element) error                { return errors.ErrUnsupported }
func (*Firewall) SetCgroupID(string, uint64) error      { return errors.ErrUnsupported }
func (*Firewall) Rulesets() ([]Ruleset, error)          { return nil, errors.ErrUnsupported }
func (*Firewall) Elements(string) ([]Element, error)    { return nil, errors.ErrUnsupported }
func (*Firewall) Remove() error                         { return errors.ErrUnsupported }
func (*Firewall) Close() error                          { return nil }
