package exporters

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestCursorJournal: cursors are saved as journal lines, the last write
// wins on reload — also when it moves the cursor back (a replay) —, a torn
// last line is passed over, the journal folds into the snapshot every
// journalCompact writes without losing the cursor, a snapshot of an
// earlier version (no journal) is read, and the inspecting commands find
// sinks with a journal only.
func TestCursorJournal(t *testing.T) {
	dir := t.TempDir()
	// An earlier version's snapshot.
	if err := os.WriteFile(filepath.Join(dir, "old.cursor"), []byte(`{"next_leaf":7,"anchor_size":9}`), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := OpenStateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := d.LoadCursor("old"); err != nil || c.Next != 7 {
		t.Fatalf("earlier snapshot: %+v %v", c, err)
	}
	for _, next := range []uint64{10, 20, 5} { // 5: a replay moved it back
		if err := d.SaveCursor("old", Cursor{Next: next}); err != nil {
			t.Fatal(err)
		}
		if err := d.SaveCursor("new", Cursor{Next: next * 2}); err != nil {
			t.Fatal(err)
		}
	}
	if c, _ := LoadCursor(dir, "old"); c.Next != 5 {
		t.Fatalf("old after a replay: %+v", c)
	}
	// A crash tore the last line: the one before holds.
	f, err := os.OpenFile(filepath.Join(dir, "new.cursor.journal"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(`{"next_leaf":999,"se`); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if c, _ := LoadCursor(dir, "new"); c.Next != 10 {
		t.Fatalf("new with a torn line: %+v", c)
	}
	if sinks, err := CursorSinks(dir); err != nil || len(sinks) != 2 || sinks[0] != "new" || sinks[1] != "old" {
		t.Fatalf("sinks %v %v", sinks, err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopened (a restart): the first write after the torn line is read
	// back, the sequence continues, and past journalCompact writes the
	// journal folds into the snapshot.
	d, err = OpenStateDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.SaveCursor("new", Cursor{Next: 11}); err != nil {
		t.Fatal(err)
	}
	if c, _ := LoadCursor(dir, "new"); c.Next != 11 {
		t.Fatalf("the first write after a torn line: %+v", c)
	}
	for i := range journalCompact + 10 {
		if err := d.SaveCursor("old", Cursor{Next: uint64(100 + i)}); err != nil {
			t.Fatal(err)
		}
	}
	if c, _ := LoadCursor(dir, "old"); c.Next != uint64(100+journalCompact+9) {
		t.Fatalf("after compaction: %+v", c)
	}
	fi, err := os.Stat(filepath.Join(dir, "old.cursor.journal"))
	if err != nil || fi.Size() > 10*200 {
		t.Fatalf("the journal was not folded into the snapshot: %v %v", fi.Size(), err)
	}
}

// BenchmarkSaveCursor compares a cursor write through the journal (one
// append and fsync) with the snapshot file it replaced (a new file,
// fsync, rename, directory fsync), on the same disk.
func BenchmarkSaveCursor(b *testing.B) {
	b.Run("journal", func(b *testing.B) {
		d, err := OpenStateDir(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		defer d.Close()
		for i := range b.N {
			if err := d.SaveCursor("s", Cursor{Next: uint64(i)}); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("rename", func(b *testing.B) {
		dir := b.TempDir()
		for i := range b.N {
			if err := writeAtomic(filepath.Join(dir, "s.cursor"), []byte(fmt.Sprintf(`{"next_leaf":%d}`, i)), true); err != nil {
				b.Fatal(err)
			}
		}
	})
}
