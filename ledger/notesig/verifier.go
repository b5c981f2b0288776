package notesig

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// LoadVerifier reads a file holding a signed-note verifier key
// ("origin+keyhash+base64", surrounding whitespace ignored), as Keygen
// makes and the log serves to auditors.
func LoadVerifier(path string) (note.Verifier, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read verifier key: %w", err)
	}
	vkey := strings.TrimSpace(string(raw))
	// Say so when given a PEM or private key: the mistake is easy (the
	// files sit side by side) and sumdb/note would only call it malformed.
	if strings.HasPrefix(vkey, "-----BEGIN") || strings.HasPrefix(vkey, "PRIVATE+KEY+") {
		return nil, fmt.Errorf("verifier key %s: holds a PEM or private key, not the log's signed-note verifier key (origin+keyhash+base64)", path)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return nil, fmt.Errorf("verifier key %s: not a signed-note verifier key (origin+keyhash+base64): %w", path, err)
	}
	return v, nil
}
