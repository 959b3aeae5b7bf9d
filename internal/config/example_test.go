package config_test

import (
	"path/filepath"
	"testing"

	"github.com/pinhole-net/pinhole/internal/config"
	"github.com/pinhole-net/pinhole/internal/manifest"
)

// TestExampleManifests checks that the example's app manifests load clean,
// and that only the wildcard is beyond what Azure Sphere itself accepts.
func TestExampleManifests(t *testing.T) {
	t.Parallel()
	c, err := config.Load("../../examples/pinhole.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var strictErrs []string
	for _, app := range c.Apps {
		m, diags, err := manifest.Load(app.Manifest)
		if err != nil {
			t.Fatalf("app %s: %v", app.Name, err)
		}
		for _, d := range diags {
			t.Errorf("app %s: %s:%d:%d: %s", app.Name, d.File, d.Line, d.Col, d.Message)
		}
		for _, d := range manifest.Strict(m, diags) {
			if d.Severity == manifest.Error {
				strictErrs = append(strictErrs, filepath.Base(filepath.Dir(d.File))+" "+d.Path)
			}
		}
	}
	if len(strictErrs) != 1 || strictErrs[0] != "webfetch Capabilities.AllowedConnections[1]" {
		t.Errorf("strict errors = %q, want only webfetch's wildcard", strictErrs)
	}
}
