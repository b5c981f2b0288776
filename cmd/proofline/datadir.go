package main

import (
	"fmt"
	"log/slog"
	"os"
	"syscall"
)

// privateDataDir makes everything serve creates under the data directory
// readable by its owner only (directories 0700, files 0600): the keys,
// the log, the JetStream store, the record index and the span store.
// The log and spans are served only to holders of a query token; on disk
// they must not be open to every local user either.
//
// The engines (tessera, nats-server, Pebble, chDB) create their files
// themselves with their own modes, so the process's umask is what
// reaches all of them; it is set before any engine starts. A data
// directory made by an earlier proofline is closed at its top, which is
// enough to keep others out of everything below it.
func privateDataDir(dir string, logger *slog.Logger) error {
	syscall.Umask(0o077)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("data dir %s is open to other users (%v) and cannot be closed: %w", dir, fi.Mode().Perm(), err)
		}
		logger.Warn("data dir was open to other users; made it 0700", "dir", dir, "was", fi.Mode().Perm().String())
	}
	return nil
}
