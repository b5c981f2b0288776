package verify

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// KindWitness: the checkpoint lacks the cosignatures its witness policy
// requires. It is declared here rather than in errors.go to keep the
// witness checks in one file.
const KindWitness Kind = "witness"

// Policy is a witness policy in the format tessera's
// NewWitnessGroupFromPolicy reads (Sigsum's policy format, with C2SP
// cosignature/v1 witness keys):
//
//	witness NAME VKEY [URL]
//	group NAME N|any|all CHILD...
//	quorum NAME|none
//
// "log" lines are accepted and ignored (the log's key is given apart).
//
// The parser is hand-written rather than tessera's so that this package,
// which auditors run offline, keeps its small set of dependencies; serve
// parses the same file with tessera as well, and both must accept it.
type Policy struct {
	// Witnesses in the order of the file.
	Witnesses []*PolicyWitness
	quorum    *policyNode // nil: quorum none
}

// PolicyWitness is one witness line.
type PolicyWitness struct {
	Name string // the policy's name for the witness
	Key  string // its cosignature verifier key (vkey)
	URL  string // its tlog-witness base URL; optional for auditors
	v    note.Verifier
}

type policyNode struct {
	name     string
	witness  *PolicyWitness // a leaf
	n        int
	children []*policyNode
}

// ParsePolicy parses a witness policy file.
func ParsePolicy(raw []byte) (*Policy, error) {
	p := &Policy{}
	nodes := map[string]*policyNode{}
	keys := map[string]string{}
	quorum := ""
	sc := bufio.NewScanner(bytes.NewReader(raw))
	ln := 0
	for sc.Scan() {
		ln++
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		bad := func(format string, args ...any) error {
			return fmt.Errorf("witness policy line %d: %s", ln, fmt.Sprintf(format, args...))
		}
		switch f[0] {
		case "log":
		case "witness":
			if len(f) != 3 && len(f) != 4 {
				return nil, bad("want: witness NAME VKEY [URL]")
			}
			if err := checkPolicyName(f[1], nodes); err != nil {
				return nil, bad("%v", err)
			}
			v, err := NewCosignatureVerifier(f[2])
			if err != nil {
				return nil, bad("witness %s: %v", f[1], err)
			}
			if other, dup := keys[f[2]]; dup {
				return nil, bad("witness %s has the key of witness %s", f[1], other)
			}
			keys[f[2]] = f[1]
			w := &PolicyWitness{Name: f[1], Key: f[2], v: v}
			if len(f) == 4 {
				u, err := url.Parse(f[3])
				if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
					return nil, bad("witness %s: URL %q is not an http(s) URL", f[1], f[3])
				}
				w.URL = f[3]
			}
			p.Witnesses = append(p.Witnesses, w)
			nodes[f[1]] = &policyNode{name: f[1], witness: w}
		case "group":
			if len(f) < 4 {
				return nil, bad("want: group NAME N|any|all CHILD...")
			}
			if err := checkPolicyName(f[1], nodes); err != nil {
				return nil, bad("%v", err)
			}
			g := &policyNode{name: f[1]}
			for _, c := range f[3:] {
				child, ok := nodes[c]
				if !ok {
					return nil, bad("group %s: unknown member %q (define it above)", f[1], c)
				}
				g.children = append(g.children, child)
			}
			switch f[2] {
			case "any":
				g.n = 1
			case "all":
				g.n = len(g.children)
			default:
				n, err := strconv.ParseUint(f[2], 10, 8)
				if err != nil || n == 0 || int(n) > len(g.children) {
					return nil, bad("group %s: threshold %q is not any, all or 1..%d", f[1], f[2], len(g.children))
				}
				g.n = int(n)
			}
			nodes[f[1]] = g
		case "quorum":
			if len(f) != 2 {
				return nil, bad("want: quorum NAME|none")
			}
			if quorum != "" {
				return nil, bad("a second quorum line")
			}
			quorum = f[1]
		default:
			return nil, bad("unknown keyword %q", f[0])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("witness policy: %w", err)
	}
	switch quorum {
	case "":
		return nil, errors.New("witness policy: no quorum line")
	case "none":
	default:
		q, ok := nodes[quorum]
		if !ok {
			return nil, fmt.Errorf("witness policy: quorum %q is not defined", quorum)
		}
		p.quorum = q
	}
	return p, nil
}

func checkPolicyName(name string, nodes map[string]*policyNode) error {
	switch name {
	case "witness", "group", "any", "all", "none", "quorum", "log":
		return fmt.Errorf("%q is a keyword, not a name", name)
	}
	if _, dup := nodes[name]; dup {
		return fmt.Errorf("%q is defined twice", name)
	}
	return nil
}

// Satisfied reports whether the witnesses for which ok is true meet the
// quorum.
func (p *Policy) Satisfied(ok func(name string) bool) bool {
	return p.quorum.satisfied(ok)
}

func (n *policyNode) satisfied(ok func(string) bool) bool {
	if n == nil {
		return true
	}
	if n.witness != nil {
		return ok(n.witness.Name)
	}
	got := 0
	for _, c := range n.children {
		if c.satisfied(ok) {
			got++
		}
	}
	return got >= n.n
}

// Quorum describes the quorum for messages, e.g. "2 of (a, b, c)".
func (p *Policy) Quorum() string { return p.quorum.String() }

func (n *policyNode) String() string {
	switch {
	case n == nil:
		return "none"
	case n.witness != nil:
		return n.name
	}
	parts := make([]string, len(n.children))
	for i, c := range n.children {
		parts[i] = c.String()
	}
	return fmt.Sprintf("%d of (%s)", n.n, strings.Join(parts, ", "))
}

// Cosigners returns the names of the policy's witnesses whose valid
// cosignature the signed note carries. A cosignature that does not verify
// counts as absent.
func (p *Policy) Cosigners(signedNote []byte) []string {
	var names []string
	for _, w := range p.Witnesses {
		if _, err := note.Open(signedNote, note.VerifierList(w.v)); err == nil {
			names = append(names, w.Name)
		}
	}
	return names
}

// WitnessResult says which witnesses cosigned a checkpoint.
type WitnessResult struct {
	Cosigners []string `json:"cosigners"`
	Quorum    string   `json:"quorum"`
}

// CheckWitnesses checks that the signed checkpoint carries the
// cosignatures of a quorum of the policy's witnesses. Its failure is a
// *MismatchError of KindWitness naming who cosigned and who was needed.
// It does not check the log's own signature (OpenCheckpoint does).
func CheckWitnesses(signedNote []byte, p *Policy) (*WitnessResult, error) {
	names := p.Cosigners(signedNote)
	res := &WitnessResult{Cosigners: names, Quorum: p.Quorum()}
	got := map[string]bool{}
	for _, n := range names {
		got[n] = true
	}
	if !p.Satisfied(func(n string) bool { return got[n] }) {
		who := "no witness"
		if len(names) > 0 {
			who = "only " + strings.Join(names, ", ")
		}
		return res, mismatch(KindWitness, "the checkpoint is cosigned by %s; the witness policy needs %s", who, p.Quorum())
	}
	return res, nil
}

// NewCosignatureVerifier returns a verifier of C2SP cosignature/v1
// signatures for an Ed25519 witness key (vkey type 0x04; a plain Ed25519
// key, type 0x01, is taken as the same key, as tessera does).
//
// Hand-written (a few lines over crypto/ed25519) because the library that
// has it, transparency-dev/formats/note, would add ML-DSA and x/crypto to
// the offline verifier's dependencies.
func NewCosignatureVerifier(vkey string) (note.Verifier, error) {
	name, rest, _ := strings.Cut(vkey, "+")
	hash16, key64, _ := strings.Cut(rest, "+")
	key, err := base64.StdEncoding.DecodeString(key64)
	if len(hash16) != 8 || err != nil || name == "" || len(key) == 0 {
		return nil, fmt.Errorf("malformed witness verifier key %q (want name+hash+base64)", vkey)
	}
	const algEd25519, algCosignatureV1 = 0x01, 0x04
	if (key[0] != algEd25519 && key[0] != algCosignatureV1) || len(key) != 1+ed25519.PublicKeySize {
		return nil, fmt.Errorf("witness verifier key %q: only Ed25519 cosignature/v1 keys (type 0x04) are supported", vkey)
	}
	pub := ed25519.PublicKey(key[1:])
	h := sha256.New()
	h.Write([]byte(name + "\n"))
	h.Write([]byte{algCosignatureV1})
	h.Write(pub)
	return &cosigVerifier{name: name, hash: binary.BigEndian.Uint32(h.Sum(nil)), key: pub}, nil
}

// cosigVerifier checks cosignature/v1: an 8-byte big-endian timestamp
// then an Ed25519 signature over "cosignature/v1\ntime T\n" + the note
// text (C2SP tlog-cosignature).
type cosigVerifier struct {
	name string
	hash uint32
	key  ed25519.PublicKey
}

func (v *cosigVerifier) Name() string    { return v.name }
func (v *cosigVerifier) KeyHash() uint32 { return v.hash }
func (v *cosigVerifier) Verify(msg, sig []byte) bool {
	if len(sig) != 8+ed25519.SignatureSize || bytes.Count(msg, []byte("\n")) < 3 {
		return false
	}
	t := binary.BigEndian.Uint64(sig)
	signed := fmt.Appendf(nil, "cosignature/v1\ntime %d\n%s", t, msg)
	return ed25519.Verify(v.key, signed, sig[8:])
}
