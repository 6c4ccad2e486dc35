package config

import (
	"time"

	"github.com/jitproxy/jitproxy/amendment"
	"go.yaml.in/yaml/v3"
)

// Duration is a time.Duration written the way amendment.ParseDuration reads
// it: "90m", "1h30m", "2d". Zero, negative and unknown units ("10y") are
// errors.
type Duration time.Duration

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// String writes d compactly: 2h, 1h30m, 3d.
func (d Duration) String() string { return amendment.FormatDuration(time.Duration(d)) }

// UnmarshalYAML parses a scalar through amendment.ParseDuration.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return kindError("a duration such as 30m, 2h or 1d", n)
	}
	s := n.Value
	if n.ShortTag() == "!!null" {
		s = ""
	}
	v, err := amendment.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}
