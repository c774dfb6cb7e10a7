package spec

import (
	"errors"
	"fmt"
	"strings"

	"github.com/kubedos/kubedos/internal/boundedio"
)

// Check reports every problem of a spec in one run: the structural ones
// (unknown fields, values of the wrong kind, duplicate keys) and the
// semantic ones of what decoded, located and in source order. A semantic
// problem at or under a path with a structural one is left out: it would
// only repeat it. It returns the spec, with defaults, when there is none.
func Check(data []byte) (*ClusterSpec, Problems) {
	doc, structural, err := parse(data)
	if err != nil {
		ps, ok := err.(Problems)
		if !ok {
			ps = Problems{{Message: err.Error()}}
		}
		return nil, ps
	}
	s := WithDefaults(doc.Spec)
	var all Problems
	for _, p := range Validate(s) {
		if !under(p.Path, structural) {
			all = append(all, p)
		}
	}
	all = append(doc.Locate(all), structural...)
	if len(all) == 0 {
		return s, nil
	}
	return nil, doc.Locate(all)
}

// CheckFile is Check of a file; the error is one of reading it. A file over
// MaxSpecBytes is a problem of the spec, as Check reports it.
func CheckFile(path string) (*ClusterSpec, Problems, error) {
	data, err := readSpec(path)
	if errors.Is(err, boundedio.ErrTooLarge) {
		return nil, Problems{{Message: fmt.Sprintf("spec is larger than the %d byte limit", MaxSpecBytes)}}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	s, ps := Check(data)
	return s, ps, nil
}

// under reports whether path is one of ps's paths or inside one.
func under(path string, ps Problems) bool {
	for _, p := range ps {
		if p.Path == "" {
			continue
		}
		if path == p.Path || strings.HasPrefix(path, p.Path+".") || strings.HasPrefix(path, p.Path+"[") {
			return true
		}
	}
	return false
}
