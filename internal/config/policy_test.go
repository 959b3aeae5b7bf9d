package config_test

import (
	"testing"

	"github.com/pinhole-net/pinhole/internal/config"
	"github.com/pinhole-net/pinhole/internal/policy"
)

// TestMatchesPolicy pins the values config repeats from policy (config
// cannot import policy, which compiles configs).
func TestMatchesPolicy(t *testing.T) {
	t.Parallel()
	if config.DefaultSystemMark != policy.DefaultSystemMark {
		t.Errorf("DefaultSystemMark = %#x, policy has %#x", config.DefaultSystemMark, policy.DefaultSystemMark)
	}
	if config.SystemName != policy.SystemName || config.UnmanagedName != policy.UnmanagedName {
		t.Error("reserved names differ from policy's")
	}
	for _, m := range []config.Mode{config.ModeEnforce, config.ModeAudit} {
		if string(m) != string(policy.Mode(m)) || (policy.Mode(m) != policy.ModeEnforce && policy.Mode(m) != policy.ModeAudit) {
			t.Errorf("mode %q is not a policy mode", m)
		}
	}
	for _, u := range []config.Unmanaged{config.UnmanagedDeny, config.UnmanagedAllow} {
		if policy.Unmanaged(u) != policy.UnmanagedDeny && policy.Unmanaged(u) != policy.UnmanagedAllow {
			t.Errorf("unmanaged %q is not a policy value", u)
		}
	}
	if config.ServiceLinkPrefix.String() != "192.168.35.0/24" {
		t.Errorf("ServiceLinkPrefix = %s", config.ServiceLinkPrefix)
	}
}
