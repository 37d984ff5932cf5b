//go:build tools

// Package tools records the CNB lifecycle's two main packages (lifecycle, launcher) so `go mod tidy` keeps its dependencies.
package tools

import (
	_ "github.com/buildpacks/lifecycle/cmd/launcher"
	_ "github.com/buildpacks/lifecycle/cmd/lifecycle"
)
