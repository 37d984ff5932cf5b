//go:build tools

// Package tools records the buildx main package so `go mod tidy` keeps its dependencies.
package tools

import (
	_ "github.com/docker/buildx/cmd/buildx"
)
