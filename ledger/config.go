package ledger

import (
	"errors"
	"fmt"
	"time"
)

// MinCheckpointInterval is the shortest CheckpointInterval proofline
// documents: each checkpoint is a signature and a file rewrite that every
// auditor and witness may fetch, so more often only costs.
const MinCheckpointInterval = 100 * time.Millisecond

// Validate checks the settings before anything is opened; zero values
// take Open's defaults. Each error names the field. The keys (Signer,
// Verifier) are checked by Open, which gets them from disk.
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("Dir: required"))
	}
	if c.BatchMaxAge < 0 {
		errs = append(errs, fmt.Errorf("BatchMaxAge: %v is negative", c.BatchMaxAge))
	}
	if c.CheckpointInterval != 0 && c.CheckpointInterval < MinCheckpointInterval {
		errs = append(errs, fmt.Errorf("CheckpointInterval: %v is below the minimum %v", c.CheckpointInterval, MinCheckpointInterval))
	}
	return errors.Join(errs...)
}
