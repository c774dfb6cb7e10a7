package proxmox

import (
	"context"
	"net/http"
	"net/url"
)

// Resource is one guest of GET /cluster/resources?type=vm.
type Resource struct {
	ID     string `json:"id"`   // qemu/100
	Type   string `json:"type"` // qemu | lxc
	VMID   int    `json:"vmid"`
	Node   string `json:"node"`
	Name   string `json:"name"`
	Status string `json:"status"`
	Tags   string `json:"tags"`
}

// Resources lists the guests of the whole cluster: VMIDs are cluster-wide,
// and one node's list does not show a VMID another node holds. Proxmox VE
// leaves out the guests the token may not audit (VM.Audit).
func (c *Client) Resources(ctx context.Context) ([]Resource, error) {
	var out []Resource
	err := c.do(ctx, http.MethodGet, "/cluster/resources", url.Values{"type": {"vm"}}, &out)
	return out, err
}

// Permissions returns the privileges the token holds on an ACL path
// ("/storage/local"), as GET /access/permissions computes them: for an API
// token with privilege separation, what both the token and its user hold.
func (c *Client) Permissions(ctx context.Context, path string) (map[string]bool, error) {
	var out map[string]map[string]int
	if err := c.do(ctx, http.MethodGet, "/access/permissions", url.Values{"path": {path}}, &out); err != nil {
		return nil, err
	}
	have := map[string]bool{}
	for priv := range out[path] {
		have[priv] = true
	}
	return have, nil
}
