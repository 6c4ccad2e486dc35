// Package configs holds jitproxy's shipped configuration files, embedded so
// the binary carries them: dev.yaml, which `jitproxy dev` runs with when no
// config file is given, and jitproxy.example.yaml, the documented production
// example. Package config parses them; this package only holds the bytes.
package configs

import "embed"

// Files holds dev.yaml and jitproxy.example.yaml. Parse one with
// config.Parse(data, "dev.yaml"): relative paths in it then resolve against
// the working directory.
//
//go:embed dev.yaml jitproxy.example.yaml
var Files embed.FS
