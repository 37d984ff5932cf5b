//go:build tools

// Package tools records the buildkitd and buildctl main packages so `go mod tidy` keeps their dependencies.
package tools

import (
	_ "github.com/moby/buildkit/cmd/buildctl"
	_ "github.com/moby/buildkit/cmd/buildkitd"
)
