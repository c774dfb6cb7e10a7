// Command requests prints a role's package requests, comma separated, so the
// benchmark's floor installs exactly what kubedos build asks apt for.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/kubedos/kubedos/internal/lock"
	"github.com/kubedos/kubedos/internal/spec"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: requests SPEC ROLE")
		os.Exit(2)
	}
	s, err := spec.Load(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(strings.Join(lock.Requests(s, spec.Role(os.Args[2])), ","))
}
