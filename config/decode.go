package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// maxNodes bounds the nodes one file may expand to through aliases, so a
// "billion laughs" file fails instead of eating memory.
const maxNodes = 100_000

// decoder walks a YAML node tree into Go values as yaml.v3's
// Decoder.KnownFields(true) would, but keeps going after a problem and
// remembers where each field was given, so every problem is reported with
// its line and path. Values of Secret fields never reach a message.
type decoder struct {
	file  string
	errs  Errors
	lines map[string]int // path → line where the YAML gives it
	nodes int            // nodes visited, against alias bombs
	// misspelt are the fields an unknown field was probably meant to be:
	// validation does not call them missing.
	misspelt map[string]bool
}

func newDecoder(file string) *decoder {
	return &decoder{file: file, lines: make(map[string]int), misspelt: make(map[string]bool)}
}

func (d *decoder) errorf(line int, path, format string, args ...any) {
	d.errs = append(d.errs, Error{File: d.file, Line: line, Path: path, Message: fmt.Sprintf(format, args...)})
}

// reported returns the paths that already have a problem, and those an
// unknown field was probably meant to be, so validation does not report
// them again.
func (d *decoder) reported() map[string]bool {
	m := make(map[string]bool, len(d.errs)+len(d.misspelt))
	for _, e := range d.errs {
		m[e.Path] = true
	}
	for p := range d.misspelt {
		m[p] = true
	}
	return m
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// decode sets v from n. A null leaves a struct as it is (an empty section
// keeps its defaults) and sets anything else to its zero value.
func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if !d.visit(n, path) {
		return
	}
	line := n.Line
	n = deref(n)
	if u, ok := v.Addr().Interface().(yaml.Unmarshaler); ok {
		if err := u.UnmarshalYAML(n); err != nil {
			d.errorf(line, path, "%s", err)
		}
		return
	}
	null := n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
	switch v.Kind() {
	case reflect.Pointer:
		if null {
			v.SetZero()
			return
		}
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		switch {
		case null:
		case n.Kind == yaml.MappingNode:
			d.mapping(n, v, path)
		default:
			d.errorf(line, path, "%s", kindError("a mapping of fields", n))
		}
	case reflect.Slice:
		switch {
		case null:
			v.SetZero()
		case n.Kind == yaml.SequenceNode:
			s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
			for i, item := range n.Content {
				p := fmt.Sprintf("%s[%d]", path, i)
				d.lines[p] = item.Line
				e := s.Index(i)
				if df, ok := e.Addr().Interface().(defaulter); ok {
					df.setDefaults()
				}
				d.decode(item, e, p)
			}
			v.Set(s)
		default:
			d.errorf(line, path, "%s", kindError("a list", n))
		}
	case reflect.String:
		switch {
		case null:
			v.SetString("")
		case n.Kind == yaml.ScalarNode:
			v.SetString(n.Value)
		default:
			d.errorf(line, path, "%s", kindError("a string", n))
		}
	case reflect.Bool:
		var b bool
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" || n.Decode(&b) != nil {
			d.errorf(line, path, "%s", kindError("true or false", n))
			return
		}
		v.SetBool(b)
	case reflect.Int, reflect.Int64:
		var i int64
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" || n.Decode(&i) != nil || v.OverflowInt(i) {
			d.errorf(line, path, "%s", kindError("a whole number", n))
			return
		}
		v.SetInt(i)
	default:
		// A field type this decoder does not know is a bug in this package.
		panic(fmt.Sprintf("config: cannot decode into %s", v.Type()))
	}
}

// visit counts a node and reports false, once with an error, when the
// file has expanded to too many.
func (d *decoder) visit(n *yaml.Node, path string) bool {
	d.nodes++
	if d.nodes <= maxNodes {
		return true
	}
	if d.nodes == maxNodes+1 {
		d.errorf(n.Line, path, "the file expands to more than %d values (aliases nested too deep?)", maxNodes)
	}
	return false
}

// deref follows aliases to the node they stand for.
func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// kindError says what a field wants and what it got.
func kindError(want string, n *yaml.Node) error {
	got := kindName(n)
	if n.Kind == yaml.ScalarNode && n.ShortTag() != "!!null" && want == "a list" {
		got += " (a one-item list is written [x])"
	}
	return fmt.Errorf("want %s, got %s", want, got)
}

// kindName names what n is. It quotes a scalar's value, so Secret fields
// never call it with a scalar.
func kindName(n *yaml.Node) string {
	switch {
	case n.Kind == yaml.MappingNode:
		return "a mapping"
	case n.Kind == yaml.SequenceNode:
		return "a list"
	case n.ShortTag() == "!!null":
		return "nothing"
	}
	return fmt.Sprintf("%q", n.Value)
}

// field is one struct field as the file names it.
type field struct {
	index  int
	secret string // for a Secret part: the Secret's own name (client_secret)
	part   string // for a Secret part: "", "file" or "env"
}

// fields maps the names a struct takes in YAML to its fields. A Secret
// field named x takes three names: x, x_file and x_env.
func fields(t reflect.Type) (map[string]field, []string) {
	m := make(map[string]field)
	var names []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		if t.Field(i).Type == reflect.TypeFor[Secret]() {
			for _, part := range []string{"", "file", "env"} {
				key := name
				if part != "" {
					key += "_" + part
				}
				m[key] = field{index: i, secret: name, part: part}
				names = append(names, key)
			}
			continue
		}
		m[name] = field{index: i}
		names = append(names, name)
	}
	return m, names
}

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	known, names := fields(v.Type())
	seen := make(map[string]int)       // key → line
	secrets := make(map[string]string) // Secret name → key that set it
	for _, p := range d.pairs(n, path) {
		name := p.key.Value
		if prev, dup := seen[name]; dup {
			d.errorf(p.key.Line, join(path, name), "given twice (first at line %d)", prev)
			continue
		}
		seen[name] = p.key.Line
		f, ok := known[name]
		if !ok {
			hint := ""
			if guess := closest(name, names); guess != "" {
				hint = " (did you mean " + guess + "?)"
				d.misspelt[join(path, guess)] = true
			}
			d.errorf(p.key.Line, path, "unknown field %q%s", name, hint)
			continue
		}
		fp := join(path, name)
		d.lines[fp] = p.key.Line
		if f.secret == "" {
			d.decode(p.val, v.Field(f.index), fp)
			continue
		}
		if first, dup := secrets[f.secret]; dup {
			d.errorf(p.key.Line, fp, "set at most one of %s, %s_file and %s_env (%s is set already)", f.secret, f.secret, f.secret, first)
			continue
		}
		if d.secret(p.val, v.Field(f.index).Addr().Interface().(*Secret), f.part, fp) {
			secrets[f.secret] = name
			if _, ok := d.lines[join(path, f.secret)]; !ok {
				d.lines[join(path, f.secret)] = p.key.Line
			}
		}
	}
}

// secret sets one source of s from n and reports whether n set one. It
// never puts n's value in a message.
func (d *decoder) secret(n *yaml.Node, s *Secret, part, path string) bool {
	if !d.visit(n, path) {
		return false
	}
	line := n.Line
	n = deref(n)
	if n.Kind != yaml.ScalarNode {
		d.errorf(line, path, "%s", kindError("a string", n))
		return false
	}
	if n.ShortTag() == "!!null" || n.Value == "" {
		return false
	}
	switch part {
	case "file":
		s.File = n.Value
	case "env":
		s.Env = n.Value
	default:
		s.value = n.Value
	}
	return true
}

type pair struct{ key, val *yaml.Node }

// pairs returns the key/value pairs of a mapping, with YAML merge keys
// ("<<: *defaults") expanded: keys given in the mapping win over merged
// ones, and earlier merged mappings win over later ones.
func (d *decoder) pairs(n *yaml.Node, path string) []pair {
	var own, merged []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, d.merge(v, path)...)
			continue
		}
		own = append(own, pair{k, v})
	}
	if len(merged) == 0 {
		return own
	}
	has := make(map[string]bool, len(own))
	for _, p := range own {
		has[p.key.Value] = true
	}
	for _, p := range merged {
		if !has[p.key.Value] {
			has[p.key.Value] = true
			own = append(own, p)
		}
	}
	return own
}

func (d *decoder) merge(n *yaml.Node, path string) []pair {
	if !d.visit(n, path) {
		return nil
	}
	m := deref(n)
	switch m.Kind {
	case yaml.MappingNode:
		return d.pairs(m, path)
	case yaml.SequenceNode:
		var out []pair
		for _, item := range m.Content {
			if !d.visit(item, path) {
				return out
			}
			im := deref(item)
			if im.Kind != yaml.MappingNode {
				d.errorf(item.Line, path, "<< merges a mapping or a list of mappings, not a list holding %s", kindName(im))
				return out
			}
			out = append(out, d.pairs(im, path)...)
		}
		return out
	}
	d.errorf(n.Line, path, "<< merges a mapping or a list of mappings, not %s", kindName(m))
	return nil
}

// closest returns the known name a misspelt one is closest to, or "" if
// none is close.
func closest(name string, known []string) string {
	best, bestDist := "", 3
	for _, k := range known {
		if dist := editDistance(name, k); dist < bestDist {
			best, bestDist = k, dist
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// parseYAML reads the one document of a file; nil means an empty file. A
// YAML syntax error comes back as Errors with its line.
func parseYAML(data []byte, file string) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, Errors{syntaxError(err, file)}
	}
	var more yaml.Node
	switch err := dec.Decode(&more); {
	case err == nil:
		line := more.Line
		if len(more.Content) > 0 {
			line = more.Content[0].Line
		}
		return nil, Errors{{File: file, Line: line, Message: "a second YAML document: a config file holds one (remove the ---)"}}
	case !errors.Is(err, io.EOF):
		return nil, Errors{syntaxError(err, file)}
	}
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		return doc.Content[0], nil
	}
	return &doc, nil
}

// syntaxError turns yaml.v3's "yaml: line N: message" into an Error with a
// line. yaml.v3 has no structured syntax error, so this reads its text; if
// the form ever changes the message is kept whole, only without a line.
func syntaxError(err error, file string) Error {
	msg := err.Error()
	var line int
	if rest, ok := strings.CutPrefix(msg, "yaml: line "); ok {
		if n, after, ok := strings.Cut(rest, ": "); ok {
			if _, scanErr := fmt.Sscanf(n, "%d", &line); scanErr == nil {
				msg = after
			}
		}
	} else if rest, ok := strings.CutPrefix(msg, "yaml: "); ok {
		msg = rest
	}
	return Error{File: file, Line: line, Message: "bad YAML: " + msg}
}
