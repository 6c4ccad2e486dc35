package config

import (
	"strconv"
	"strings"
)

// Error is one problem in a configuration file.
type Error struct {
	File string
	// Line is where the YAML gives the field, or where the enclosing
	// mapping starts when the field is missing; 0 if unknown.
	Line int
	// Path names the field: targets.ssh[1].name,
	// contract.rules[0].max_duration. Empty for the file as a whole.
	Path    string
	Message string
}

// Error renders e as FILE:LINE: PATH: MESSAGE, leaving out what is unknown.
func (e Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteString(":" + strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Message)
	return b.String()
}

// Errors is every problem found in a file, in file order. Load and Parse
// return it as their error; use errors.As to get at it.
type Errors []Error

// Error renders one problem a line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns each Error, for errors.As.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}
