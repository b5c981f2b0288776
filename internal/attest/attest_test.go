package attest

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSignVerify(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "attest.key")
	k, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreate(path)
	if err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", st.Mode(), err)
	}
	other, err := LoadOrCreate(filepath.Join(dir, "other.key"))
	if err != nil {
		t.Fatal(err)
	}
	data := []byte(`{"record_id":"r-1"}`)
	att := k.Sign("r-1", data)
	for _, c := range []struct {
		name string
		key  *Key
		id   string
		data []byte
		att  string
		want bool
	}{
		{"same key", k, "r-1", data, att, true},
		{"key reloaded from its file", again, "r-1", data, att, true},
		{"another key", other, "r-1", data, att, false},
		{"other id", k, "r-2", data, att, false},
		{"one byte of data changed", k, "r-1", []byte(`{"record_id":"r-2"}`), att, false},
		{"id and data split elsewhere", k, "r-1{", []byte(`"record_id":"r-1"}`), att, false},
		{"no attestation", k, "r-1", data, "", false},
		{"not base64", k, "r-1", data, "!!", false},
	} {
		if got := c.key.Verify(c.id, c.data, c.att); got != c.want {
			t.Errorf("%s: Verify = %v, want %v", c.name, got, c.want)
		}
	}
	if _, err := New(make([]byte, 8)); err == nil {
		t.Error("a short key was accepted")
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.key"), []byte("not hex"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(filepath.Join(dir, "bad.key")); err == nil {
		t.Error("a corrupt key file was accepted")
	}
}
