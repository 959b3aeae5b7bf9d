package manifest

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"unicode/utf8"
)

// maxDepth bounds nesting (the top-level object is level 1); real
// manifests are three levels deep.
const maxDepth = 64

type kind uint8

const (
	kindNull kind = iota
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
)

func (k kind) String() string {
	switch k {
	case kindNull:
		return "null"
	case kindBool:
		return "a boolean"
	case kindNumber:
		return "a number"
	case kindString:
		return "a string"
	case kindArray:
		return "an array"
	case kindObject:
		return "an object"
	}
	return "?"
}

// value is one JSON value with the byte range it came from, which
// encoding/json does not give.
type value struct {
	kind     kind
	off, end int
	b        bool
	text     string // decoded string, or the number as written
	members  []member
	elems    []*value
}

type member struct {
	key    string
	keyOff int
	val    *value
}

// posError is a syntax problem at a byte offset.
type posError struct {
	off int
	msg string
}

func (e *posError) Error() string { return e.msg }

// parseJSON reads one JSON document into a tree of values. It checks the
// whole text with encoding/json first, so the tree builder below only ever
// sees valid JSON; it still never indexes out of range on any input.
func parseJSON(data []byte) (*value, error) {
	if !json.Valid(data) {
		var raw json.RawMessage
		err := json.Unmarshal(data, &raw)
		var se *json.SyntaxError
		if errors.As(err, &se) {
			off := int(se.Offset) - 1
			if se.Offset >= int64(len(data)) {
				off = len(data)
			}
			return nil, &posError{off: max(off, 0), msg: "not valid JSON: " + se.Error()}
		}
		return nil, &posError{off: 0, msg: "not valid JSON"}
	}
	p := &jsonParser{data: data}
	p.skipSpace()
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	return v, nil
}

type jsonParser struct {
	data []byte
	pos  int
}

func (p *jsonParser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *jsonParser) peek() byte {
	if p.pos < len(p.data) {
		return p.data[p.pos]
	}
	return 0
}

func (p *jsonParser) errorf(format string, args ...any) error {
	return &posError{off: min(p.pos, len(p.data)), msg: fmt.Sprintf(format, args...)}
}

func (p *jsonParser) value(depth int) (*value, error) {
	if depth >= maxDepth {
		return nil, p.errorf("nested more than %d levels deep", maxDepth)
	}
	start := p.pos
	switch c := p.peek(); {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"':
		s, err := p.str()
		if err != nil {
			return nil, err
		}
		return &value{kind: kindString, off: start, end: p.pos, text: s}, nil
	case c == 't' || c == 'f' || c == 'n':
		for _, lit := range []string{"true", "false", "null"} {
			if p.pos+len(lit) <= len(p.data) && string(p.data[p.pos:p.pos+len(lit)]) == lit {
				p.pos += len(lit)
				v := &value{kind: kindBool, off: start, end: p.pos, b: lit == "true"}
				if lit == "null" {
					v.kind = kindNull
				}
				return v, nil
			}
		}
	case c == '-' || (c >= '0' && c <= '9'):
		for p.pos < len(p.data) {
			c := p.data[p.pos]
			if (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E' {
				p.pos++
				continue
			}
			break
		}
		return &value{kind: kindNumber, off: start, end: p.pos, text: string(p.data[start:p.pos])}, nil
	}
	return nil, p.errorf("unexpected character")
}

func (p *jsonParser) object(depth int) (*value, error) {
	v := &value{kind: kindObject, off: p.pos}
	p.pos++ // {
	p.skipSpace()
	if p.peek() == '}' {
		p.pos++
		v.end = p.pos
		return v, nil
	}
	for {
		p.skipSpace()
		if p.peek() != '"' {
			return nil, p.errorf("expected a key")
		}
		keyOff := p.pos
		key, err := p.str()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.peek() != ':' {
			return nil, p.errorf("expected ':'")
		}
		p.pos++
		p.skipSpace()
		val, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		v.members = append(v.members, member{key: key, keyOff: keyOff, val: val})
		p.skipSpace()
		switch p.peek() {
		case ',':
			p.pos++
		case '}':
			p.pos++
			v.end = p.pos
			return v, nil
		default:
			return nil, p.errorf("expected ',' or '}'")
		}
	}
}

func (p *jsonParser) array(depth int) (*value, error) {
	v := &value{kind: kindArray, off: p.pos}
	p.pos++ // [
	p.skipSpace()
	if p.peek() == ']' {
		p.pos++
		v.end = p.pos
		return v, nil
	}
	for {
		p.skipSpace()
		el, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		v.elems = append(v.elems, el)
		p.skipSpace()
		switch p.peek() {
		case ',':
			p.pos++
		case ']':
			p.pos++
			v.end = p.pos
			return v, nil
		default:
			return nil, p.errorf("expected ',' or ']'")
		}
	}
}

// str reads a string token and decodes it. Strings must be valid UTF-8
// (RFC 8259 section 8.1); encoding/json would silently replace bad bytes.
func (p *jsonParser) str() (string, error) {
	start := p.pos
	p.pos++ // opening quote
	escaped := false
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		switch {
		case c == '\\':
			escaped = true
			p.pos += 2
			continue
		case c == '"':
			p.pos++
			raw := p.data[start:p.pos]
			if !utf8.Valid(raw) {
				return "", &posError{off: start, msg: "string is not valid UTF-8"}
			}
			if !escaped {
				return string(raw[1 : len(raw)-1]), nil
			}
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return "", &posError{off: start, msg: "bad string: " + err.Error()}
			}
			return s, nil
		}
		p.pos++
	}
	p.pos = len(p.data)
	return "", p.errorf("unterminated string")
}

// lineIndex turns byte offsets into 1-based line and column numbers. The
// column counts characters (Unicode code points), as editors show them.
type lineIndex struct {
	data   []byte
	starts []int
}

func newLineIndex(data []byte) *lineIndex {
	li := &lineIndex{data: data, starts: []int{0}}
	for i, c := range data {
		if c == '\n' {
			li.starts = append(li.starts, i+1)
		}
	}
	return li
}

func (li *lineIndex) position(off int) Position {
	off = max(0, min(off, len(li.data)))
	i := sort.Search(len(li.starts), func(i int) bool { return li.starts[i] > off }) - 1
	i = max(i, 0)
	return Position{Line: i + 1, Col: utf8.RuneCount(li.data[li.starts[i]:off]) + 1}
}
