package signer

import (
	"errors"
	"fmt"
	"time"
)

// Validate checks the settings; zero values take New's defaults. Each
// error names the field.
func (c Config) Validate() error {
	var errs []error
	if c.MaxBatch < 0 {
		errs = append(errs, fmt.Errorf("MaxBatch: %d is negative", c.MaxBatch))
	}
	for _, f := range []struct {
		name string
		d    time.Duration
	}{{"AckWait", c.AckWait}, {"RetryDelay", c.RetryDelay}} {
		if f.d < 0 {
			errs = append(errs, fmt.Errorf("%s: %v is negative", f.name, f.d))
		}
	}
	return errors.Join(errs...)
}
