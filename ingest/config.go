package ingest

import (
	"errors"
	"fmt"
)

// Validate checks the settings; zero values take DefaultConfig's. Each
// error names the field.
func (c Config) Validate() error {
	var errs []error
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("MaxBodyBytes: %d is negative", c.MaxBodyBytes))
	}
	if c.MaxRecords < 0 {
		errs = append(errs, fmt.Errorf("MaxRecords: %d is negative", c.MaxRecords))
	}
	if c.PublishTimeout < 0 {
		errs = append(errs, fmt.Errorf("PublishTimeout: %v is negative", c.PublishTimeout))
	}
	return errors.Join(errs...)
}
