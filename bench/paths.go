package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// pathPfgateway names, in -paths, every gateway child (-gateway-bin ×
// -splice).
const (
	pathFloor     = "floor"
	pathPfgateway = "pfgateway"
)

// pathNames are what -paths may name, in the report's order.
var pathNames = []string{pathDirect, pathFloor, pathAPIServer, pathPfgateway, pathRelay}

// parsePaths reads -paths. The direct path and the floor are what every
// ratio divides by, so they cannot be left out.
func parsePaths(s string) (map[string]bool, error) {
	out := map[string]bool{}
	var err error
	for _, p := range strings.Split(s, ",") {
		p = strings.TrimSpace(p)
		switch {
		case !slices.Contains(pathNames, p):
			err = errors.Join(err, fmt.Errorf("-paths: unknown path %q (want %s)", p, strings.Join(pathNames, ", ")))
		case out[p]:
			err = errors.Join(err, fmt.Errorf("-paths: %s named twice", p))
		}
		out[p] = true
	}
	if err == nil && (!out[pathDirect] || !out[pathFloor]) {
		err = fmt.Errorf("-paths: %s and %s are always measured (every ratio divides by them); name them", pathDirect, pathFloor)
	}
	return out, err
}

// applyPaths leaves out of c what -paths does not name.
func (c *config) applyPaths() {
	if !c.paths[pathRelay] {
		c.relay = false
	}
	if !c.paths[pathPfgateway] {
		c.splice = nil
	}
}
