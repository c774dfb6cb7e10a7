package spec

import (
	"fmt"
	"time"
)

// Defaults and bounds of workloads.observability (docs/observability.md).
// Retention is bounded on both axes so the prometheus node's data partition
// cannot fill whatever the fleet does.
const (
	DefaultRetentionTime  = 15 * 24 * time.Hour
	MinRetentionTime      = time.Hour
	MaxRetentionTime      = 366 * 24 * time.Hour
	DefaultScrapeInterval = 15 * time.Second
	MinScrapeInterval     = 5 * time.Second
	MaxScrapeInterval     = 5 * time.Minute
)

// ObservabilitySettings are workloads.observability with defaults applied.
type ObservabilitySettings struct {
	RetentionTime  time.Duration
	RetentionGiB   int
	ScrapeInterval time.Duration
}

// ObservabilitySettings parses the observability fields, applying defaults and bounds.
// The default size is half the smallest prometheus node's disk, so the
// database never takes the room the data partition needs for anything else.
func (s *ClusterSpec) ObservabilitySettings() (ObservabilitySettings, error) {
	o := s.Workloads.Observability
	out := ObservabilitySettings{RetentionTime: DefaultRetentionTime, ScrapeInterval: DefaultScrapeInterval}
	disk := s.prometheusDiskGiB()
	out.RetentionGiB = max(1, disk/2)
	if r := o.Retention; r != nil {
		if r.Time != "" {
			d, err := time.ParseDuration(r.Time)
			if err != nil {
				return out, fmt.Errorf("workloads.observability.retention.time: %q is not a duration such as 360h", r.Time)
			}
			if d < MinRetentionTime || d > MaxRetentionTime {
				return out, fmt.Errorf("workloads.observability.retention.time: %s is outside [%s, %s]", d, MinRetentionTime, MaxRetentionTime)
			}
			out.RetentionTime = d
		}
		if r.SizeGiB != 0 {
			if r.SizeGiB < 1 || (disk > 0 && r.SizeGiB >= disk) {
				return out, fmt.Errorf("workloads.observability.retention.sizeGiB: %d must be at least 1 and below the prometheus node's disk (%d GiB)", r.SizeGiB, disk)
			}
			out.RetentionGiB = r.SizeGiB
		}
	}
	if v := o.ScrapeInterval; v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return out, fmt.Errorf("workloads.observability.scrapeInterval: %q is not a duration such as 15s", v)
		}
		if d < MinScrapeInterval || d > MaxScrapeInterval || d%time.Second != 0 {
			return out, fmt.Errorf("workloads.observability.scrapeInterval: %s must be whole seconds in [%s, %s]", d, MinScrapeInterval, MaxScrapeInterval)
		}
		out.ScrapeInterval = d
	}
	return out, nil
}

// prometheusDiskGiB is the smallest disk of the prometheus nodes (0: none,
// or the spec is not defaulted).
func (s *ClusterSpec) prometheusDiskGiB() int {
	disk := 0
	for _, n := range s.Topology.Nodes {
		if n.Role == RolePrometheus && n.DiskGiB > 0 && (disk == 0 || n.DiskGiB < disk) {
			disk = n.DiskGiB
		}
	}
	return disk
}

func validateObservability(c *problems, s *ClusterSpec) {
	if _, err := s.ObservabilitySettings(); err != nil {
		c.add("workloads.observability", "%v", err)
	}
}
