package policy

import (
	"strings"
)

// RedactArgs returns a copy of args with every value at paths replaced
// by Masked. Paths are dot-separated keys; "*" matches any key of an
// object or any element of an array. Paths that do not exist are skipped:
// a redaction rule names what must never be seen, not what must be there.
func RedactArgs(args map[string]any, paths []string) map[string]any {
	out, _ := deepCopy(args).(map[string]any)
	if out == nil {
		return nil
	}
	for _, p := range paths {
		mask(out, strings.Split(p, "."))
	}
	return out
}

func mask(v any, path []string) {
	if len(path) == 0 {
		return
	}
	key, rest := path[0], path[1:]
	switch node := v.(type) {
	case map[string]any:
		for k := range node {
			if key != "*" && k != key {
				continue
			}
			if len(rest) == 0 {
				node[k] = Masked
			} else {
				mask(node[k], rest)
			}
		}
	case []any:
		if key != "*" {
			return
		}
		for i := range node {
			if len(rest) == 0 {
				node[i] = Masked
			} else {
				mask(node[i], rest)
			}
		}
	}
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = deepCopy(e)
		}
		return s
	default:
		return v
	}
}
