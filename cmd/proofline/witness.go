package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/proofline/proofline/ledger"
)

// witnessFlags are serve's witnessing flags.
type witnessFlags struct {
	policy   string
	failOpen bool
	timeout  time.Duration
}

func (w *witnessFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&w.policy, "witness-policy", "", "witness policy file (tessera/Sigsum policy format: witness NAME VKEY URL, group, quorum): publish only checkpoints cosigned by its quorum")
	fs.BoolVar(&w.failOpen, "witness-fail-open", false, "publish checkpoints without the witness quorum when it cannot be reached (default: publish nothing new, /readyz reports witness, the unpublished backlog grows)")
	fs.DurationVar(&w.timeout, "witness-timeout", 5*time.Second, "longest wait for the witnesses' cosignatures on one checkpoint")
}

// config reads and checks the policy file; nil without --witness-policy.
func (w *witnessFlags) config(roles roleSet) (*ledger.WitnessConfig, error) {
	if w.policy == "" {
		if w.failOpen {
			return nil, fmt.Errorf("%w: --witness-fail-open needs --witness-policy", errUsage)
		}
		return nil, nil
	}
	if !roles["signer"] {
		return nil, fmt.Errorf("%w: --witness-policy is for the signer role, which publishes checkpoints", errUsage)
	}
	raw, err := os.ReadFile(w.policy)
	if err != nil {
		return nil, fmt.Errorf("%w: --witness-policy: %v", errUsage, err)
	}
	c := &ledger.WitnessConfig{Policy: raw, FailOpen: w.failOpen, Timeout: w.timeout}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%w: --witness-policy %s: %v", errUsage, w.policy, err)
	}
	return c, nil
}
