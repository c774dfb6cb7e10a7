// Package buildinfo reports what binary this is: the version stamped at link
// time and the source revision Go recorded, so builds can be traced to source.
package buildinfo

import (
	"runtime"
	"runtime/debug"
)

// Version is set at link time: -ldflags "-X github.com/kubedos/kubedos/internal/buildinfo.Version=v0.1.0".
var Version = "dev"

// Info describes the running binary.
type Info struct {
	Version   string `json:"version"`
	Revision  string `json:"revision,omitempty"`
	Modified  bool   `json:"modified,omitempty"`
	GoVersion string `json:"goVersion"`
	Platform  string `json:"platform"`
}

// Get reads the link-time version and the VCS stamp of the build.
func Get() Info {
	info := Info{Version: Version, GoVersion: runtime.Version(), Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				info.Revision = s.Value
			case "vcs.modified":
				info.Modified = s.Value == "true"
			}
		}
	}
	return info
}
