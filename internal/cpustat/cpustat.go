//go:build unix

// Package cpustat reads the CPU time this process has used: the figure
// the benchmarks report per record, since on a shared machine wall time
// swings with the load and CPU time is what the code costs.
package cpustat

import (
	"fmt"
	"syscall"
	"time"
)

// Self is the process's CPU time so far: user and system, all threads,
// background work (the garbage collector, an engine's compactions)
// included.
func Self() (time.Duration, error) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), nil
}
