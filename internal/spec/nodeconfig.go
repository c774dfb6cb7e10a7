package spec

import (
	"regexp"
	"slices"
	"strings"
	"unicode"
)

// MaxNodeSysctls bounds the kernel parameters of one role, as kubedosd
// bounds one NodeConfig document.
const MaxNodeSysctls = 256

// sysctlKeyRE is kubedosd's rule: dotted /proc/sys segments, no '/', no "..".
var sysctlKeyRE = regexp.MustCompile(`^[a-z0-9_]+(\.[A-Za-z0-9_-]+)+$`)

// validateNodeConfig checks what a spec can know of a node configuration;
// the node itself checks its allow-list and that each parameter exists.
func validateNodeConfig(c *problems, s *ClusterSpec) {
	for _, role := range sortedKeys(s.NodeConfig) {
		path := "nodeConfig." + string(role)
		if !slices.Contains(Roles, role) {
			c.add(path, "unknown role %q (roles: %v)", role, Roles)
		}
		rc := s.NodeConfig[role]
		if len(rc.Sysctls) > MaxNodeSysctls {
			c.add(path+".sysctls", "%d parameters, at most %d", len(rc.Sysctls), MaxNodeSysctls)
		}
		for _, k := range sortedKeys(rc.Sysctls) {
			at := path + ".sysctls." + k
			if !sysctlKeyRE.MatchString(k) || len(k) > 256 {
				c.add(at, "not a kernel parameter name (dotted, like net.ipv4.ip_forward)")
				continue
			}
			if v := rc.Sysctls[k]; v == "" || len(v) > 4096 || strings.ContainsFunc(v, func(r rune) bool { return !unicode.IsPrint(r) && r != '\t' }) {
				c.add(at, "value %q must be 1 to 4096 printable characters on one line", v)
			}
		}
	}
}
