//go:build tools

// Package tools records Tekton's config package (its placeholder for the config YAML files) so `go mod tidy` keeps the pin.
package tools

import (
	_ "github.com/tektoncd/pipeline/config"
)
