package observability

import _ "embed"

//go:embed kubedos.rules.yml
var rules []byte

// Rules is the alert rules file (kubedos.rules.yml), the same for every
// cluster: what differs between clusters is which targets exist.
func Rules() []byte { return append([]byte(nil), rules...) }
