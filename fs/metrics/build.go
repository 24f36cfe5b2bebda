package metrics

import (
	"runtime"
	"runtime/debug"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// BuildInfo is what a binary knows of its own build.
type BuildInfo struct {
	Version   string `json:"version"`  // the module version, or "devel"
	Revision  string `json:"revision"` // the VCS commit, if built from a checkout
	Modified  bool   `json:"modified"` // the checkout had uncommitted changes
	GoVersion string `json:"go_version"`
	Format    int    `json:"format"` // the store format it writes (see SetFormat)
}

// format is the store format this binary writes; the command that links
// the store sets it (this package does not import the store's).
var format int

// SetFormat records the store format the binary writes, for Build.
func SetFormat(v int) { format = v }

// Build returns the running binary's build information.
func Build() BuildInfo {
	b := BuildInfo{Version: "devel", GoVersion: runtime.Version(), Format: format}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	if v := info.Main.Version; v != "" && v != "(devel)" {
		b.Version = v
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// buildInfoGauge is ckptfs_build_info: 1, labelled with the build.
func buildInfoGauge() prometheus.Collector {
	b := Build()
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "ckptfs_build_info",
		Help: "1, labelled with the version, VCS revision and Go version of the running ckptfs and the store format it writes.",
		ConstLabels: prometheus.Labels{
			"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion,
			"format": strconv.Itoa(b.Format),
		},
	})
	g.Set(1)
	return g
}
