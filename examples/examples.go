// Package examples embeds the sample pinholed config and the sample apps'
// manifests, so that `pinhole lab` can run them without the source tree.
package examples

import "embed"

// FS holds pinhole.yaml and apps/NAME/app_manifest.json.
//
//go:embed pinhole.yaml apps/*/app_manifest.json
var FS embed.FS
