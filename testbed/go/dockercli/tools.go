//go:build tools

// Package tools records the docker CLI main package so `go mod tidy` keeps its dependencies.
package tools

import (
	_ "github.com/docker/cli/cmd/docker"
)
