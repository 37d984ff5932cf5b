//go:build tools

// Package tools records the Kaniko executor main package so `go mod tidy` keeps its dependencies.
package tools

import (
	_ "github.com/chainguard-dev/kaniko/cmd/executor"
)
