package chdb

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// ClickHouse's Atomic databases keep everything under store/XXX/UUID and
// reach it through symbolic links: metadata/DB → ../store/XXX/UUID (the
// database's table definitions) and data/DB/TABLE → ../../store/XXX/UUID
// (a table's parts). A data directory copied or restored with links
// dereferenced (cp -rL, some backup tools) has real directories there,
// duplicates of the store, and the engine refuses to start ("Directory
// metadata/default already exists"). relinkStore puts the links back
// before the engine opens. It only replaces a directory whose contents
// the store holds too, so nothing that exists once is ever removed.

var tableUUID = regexp.MustCompile(`^ATTACH TABLE _ UUID '([0-9a-f-]{36})'`)

// relinkStore repairs dir (the engine's --path) and returns what it
// relinked, for the log.
func relinkStore(dir string) ([]string, error) {
	var fixed []string
	metaEntries, err := os.ReadDir(filepath.Join(dir, "metadata"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	for _, e := range metaEntries {
		if !e.IsDir() { // links and the .sql files are as they should be
			continue
		}
		link := filepath.Join(dir, "metadata", e.Name())
		target, err := findStoreCopy(dir, link)
		if err != nil {
			return fixed, err
		}
		if target == "" {
			continue // not a copy of a store directory: leave it to the engine
		}
		if err := replaceWithLink(link, filepath.Join("..", "store", target)); err != nil {
			return fixed, err
		}
		fixed = append(fixed, "metadata/"+e.Name())
	}
	dataDBs, err := os.ReadDir(filepath.Join(dir, "data"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fixed, err
	}
	for _, db := range dataDBs {
		if !db.IsDir() {
			continue
		}
		tables, err := os.ReadDir(filepath.Join(dir, "data", db.Name()))
		if err != nil {
			return fixed, err
		}
		for _, tbl := range tables {
			if !tbl.IsDir() {
				continue
			}
			sql, err := os.ReadFile(filepath.Join(dir, "metadata", db.Name(), tbl.Name()+".sql"))
			if err != nil {
				continue
			}
			m := tableUUID.FindSubmatch(sql)
			if m == nil {
				continue
			}
			uuid := string(m[1])
			target := filepath.Join(uuid[:3], uuid)
			same, err := sameNames(filepath.Join(dir, "data", db.Name(), tbl.Name()), filepath.Join(dir, "store", target))
			if err != nil || !same {
				continue // the store lacks it, or holds something else: leave it to the engine
			}
			if err := replaceWithLink(filepath.Join(dir, "data", db.Name(), tbl.Name()), filepath.Join("..", "..", "store", target)); err != nil {
				return fixed, err
			}
			fixed = append(fixed, "data/"+db.Name()+"/"+tbl.Name())
		}
	}
	return fixed, nil
}

// findStoreCopy returns store/XXX/UUID (relative to store) whose files
// are exactly those of the database metadata directory meta, or "".
func findStoreCopy(dir, meta string) (string, error) {
	want, err := dirFiles(meta)
	if err != nil || len(want) == 0 {
		return "", err
	}
	prefixes, err := os.ReadDir(filepath.Join(dir, "store"))
	if err != nil {
		return "", nil
	}
	for _, p := range prefixes {
		if !p.IsDir() {
			continue
		}
		uuids, err := os.ReadDir(filepath.Join(dir, "store", p.Name()))
		if err != nil {
			return "", err
		}
		for _, u := range uuids {
			cand := filepath.Join(p.Name(), u.Name())
			got, err := dirFiles(filepath.Join(dir, "store", cand))
			if err != nil {
				return "", err
			}
			if sameFiles(want, got) {
				return cand, nil
			}
		}
	}
	return "", nil
}

// dirFiles reads the regular files directly in d (a metadata directory
// holds only the tables' .sql files).
func dirFiles(d string) (map[string][]byte, error) {
	entries, err := os.ReadDir(d)
	if err != nil {
		return nil, err
	}
	out := map[string][]byte{}
	for _, e := range entries {
		if !e.Type().IsRegular() || !strings.HasSuffix(e.Name(), ".sql") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(d, e.Name()))
		if err != nil {
			return nil, err
		}
		out[e.Name()] = b
	}
	return out, nil
}

// sameNames reports whether directories a and b hold the same names.
func sameNames(a, b string) (bool, error) {
	ea, err := os.ReadDir(a)
	if err != nil {
		return false, err
	}
	eb, err := os.ReadDir(b)
	if err != nil {
		return false, err
	}
	if len(ea) != len(eb) {
		return false, nil
	}
	for i := range ea {
		if ea[i].Name() != eb[i].Name() {
			return false, nil
		}
	}
	return true, nil
}

func sameFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if v, ok := b[k]; !ok || !bytes.Equal(v, a[k]) {
			return false
		}
	}
	return true
}

// replaceWithLink swaps the directory at path for a symbolic link to
// target: the copy is first moved aside, then removed once the link is
// in place, so a crash in between leaves either the copy or the link.
func replaceWithLink(path, target string) error {
	aside := path + ".dereferenced-copy"
	if err := os.Rename(path, aside); err != nil {
		return fmt.Errorf("relink %s: %w", path, err)
	}
	if err := os.Symlink(target, path); err != nil {
		_ = os.Rename(aside, path)
		return fmt.Errorf("relink %s: %w", path, err)
	}
	if err := os.RemoveAll(aside); err != nil {
		return fmt.Errorf("relink %s: remove the copy: %w", path, err)
	}
	return nil
}
