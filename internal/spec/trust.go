package spec

import "time"

// The bounds of trust.revocationMaxAge: a node polls the hub's list every
// 30 s, so under a minute refuses operators at the first lost poll; over a
// day leaves a revoked operator working for as long while a node is cut off
// from its hub.
const (
	MinRevocationMaxAge = time.Minute
	MaxRevocationMaxAge = 24 * time.Hour
)

// RevocationMaxAgeDuration is trust.revocationMaxAge, or its default when
// it is unset or out of bounds (validation refuses those).
func (t Trust) RevocationMaxAgeDuration() time.Duration {
	d, err := time.ParseDuration(t.RevocationMaxAge)
	if err != nil || d < MinRevocationMaxAge || d > MaxRevocationMaxAge {
		d, _ = time.ParseDuration(DefaultRevocationMaxAge)
	}
	return d
}
