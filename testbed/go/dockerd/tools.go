//go:build tools

// Package tools records the dockerd and docker-proxy main packages so `go mod tidy` keeps their dependencies.
package tools

import (
	_ "github.com/moby/moby/v2/cmd/docker-proxy"
	_ "github.com/moby/moby/v2/cmd/dockerd"
)
