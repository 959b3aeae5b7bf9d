package cli

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/pinhole-net/pinhole/internal/manifest"
	"github.com/spf13/cobra"
)

func init() { register(newManifestCmd) }

func newManifestCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "manifest",
		Short: "Work with Azure Sphere app_manifest.json files",
	}
	cmd.AddCommand(newManifestLintCmd())
	return cmd
}

func newManifestLintCmd() *cobra.Command {
	var strict, asJSON bool
	cmd := &cobra.Command{
		Use:   "lint [--strict] [--json] FILE...",
		Short: "Check app manifests as Azure Sphere reads them",
		Long: `Check app_manifest.json files: every field Azure Sphere knows, and every
AllowedConnections entry classified as host name, DNS-SD service, IPv4 address,
or one of pinhole's extensions (*.domain wildcards, IPv6 addresses, host:port).

Problems are printed like compiler messages, with the Azure Sphere error code
where the original has one. The exit status is 1 when any file has an error.
--strict also counts what Azure Sphere itself refuses (the extensions and
missing required fields) as errors; warnings alone never fail.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, files []string) error {
			results := lintFiles(files, strict)
			out := cmd.OutOrStdout()
			var err error
			if asJSON {
				err = writeLintJSON(out, results)
			} else {
				err = writeLintText(out, results)
			}
			if err != nil {
				return fmt.Errorf("write lint results: %w", err)
			}
			for _, r := range results {
				if r.Errors > 0 {
					return &ExitError{Code: 1}
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&strict, "strict", false, "also flag what Azure Sphere refuses: wildcards, IPv6, ports, missing required fields")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON array of per-file results")
	return cmd
}

// lintResult is one file's verdict, as --json prints it.
type lintResult struct {
	File        string                `json:"file"`
	OK          bool                  `json:"ok"`
	Errors      int                   `json:"errors"`
	Warnings    int                   `json:"warnings"`
	Diagnostics []manifest.Diagnostic `json:"diagnostics"`
	Manifest    *lintManifestSummary  `json:"manifest,omitempty"`
	readErr     error
}

// lintManifestSummary is what a loaded manifest allows on the network.
type lintManifestSummary struct {
	Name                  string                `json:"name,omitempty"`
	ComponentID           string                `json:"componentId,omitempty"`
	ApplicationType       string                `json:"applicationType,omitempty"`
	AllowedConnections    []manifest.Connection `json:"allowedConnections"`
	AllowedTCPServerPorts []uint16              `json:"allowedTcpServerPorts"`
	AllowedUDPServerPorts []uint16              `json:"allowedUdpServerPorts"`
}

func lintFiles(files []string, strict bool) []lintResult {
	results := make([]lintResult, 0, len(files))
	for _, file := range files {
		m, diags, err := manifest.Load(file)
		r := lintResult{File: file}
		if err != nil && diags == nil {
			// The file could not be read at all.
			r.readErr = err
			diags = []manifest.Diagnostic{{File: file, Severity: manifest.Error, Message: err.Error()}}
		}
		if strict && m != nil {
			diags = manifest.Strict(m, diags)
		}
		r.Diagnostics = diags
		if r.Diagnostics == nil {
			r.Diagnostics = []manifest.Diagnostic{}
		}
		r.Errors, r.Warnings = manifest.Count(diags)
		r.OK = r.Errors == 0
		if m != nil {
			c := m.Capabilities
			r.Manifest = &lintManifestSummary{
				Name: m.Name, ComponentID: m.ComponentID, ApplicationType: m.ApplicationType,
				AllowedConnections:    orEmpty(c.AllowedConnections),
				AllowedTCPServerPorts: orEmpty(c.AllowedTCPServerPorts),
				AllowedUDPServerPorts: orEmpty(c.AllowedUDPServerPorts),
			}
		}
		results = append(results, r)
	}
	return results
}

func writeLintText(w io.Writer, results []lintResult) error {
	var errs, warns, bad int
	for _, r := range results {
		for _, d := range r.Diagnostics {
			line := d.String()
			if r.readErr != nil {
				line = fmt.Sprintf("%s: error: %s", r.File, d.Message)
			}
			if _, err := fmt.Fprintln(w, line); err != nil {
				return err
			}
		}
		errs += r.Errors
		warns += r.Warnings
		if r.Errors > 0 {
			bad++
		}
	}
	_, err := fmt.Fprintf(w, "%s: %d ok, %d refused; %s, %s\n",
		plural(len(results), "file"), len(results)-bad, bad, plural(errs, "error"), plural(warns, "warning"))
	return err
}

func writeLintJSON(w io.Writer, results []lintResult) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(results)
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
