package proxmox

import (
	"context"
	"fmt"
	"testing"
)

// BenchmarkDeploy16Unchanged is a second deploy of the 16-node reference
// platform (every VM there already): the cost of checking, one config read
// per node, against the API stand-in on loopback.
func BenchmarkDeploy16Unchanged(b *testing.B) {
	fx := newDeployFixture(b)
	base := fx.plan.Nodes
	fx.plan.Nodes = nil
	for i := range 16 {
		n := base[min(i, 2)]
		n.Shape.VMID = 100 + i
		n.Shape.Name = fmt.Sprintf("node-%d", i)
		fx.plan.Nodes = append(fx.plan.Nodes, n)
	}
	ctx := context.Background()
	if _, err := fx.d.Deploy(ctx, fx.plan); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		if _, err := fx.d.Deploy(ctx, fx.plan); err != nil {
			b.Fatal(err)
		}
	}
}
