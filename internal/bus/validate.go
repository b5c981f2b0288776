package bus

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Validate checks the configuration without connecting or starting
// anything, so that every mistake is reported before any engine starts.
// Each error names the field; zero values take Open's defaults.
func (c Config) Validate() error {
	var errs []error
	if c.URL == "" {
		if c.DataDir == "" {
			errs = append(errs, errors.New("DataDir: required for the embedded server"))
		}
	} else {
		for _, u := range strings.Split(c.URL, ",") {
			p, err := url.Parse(strings.TrimSpace(u))
			switch {
			case err != nil:
				errs = append(errs, fmt.Errorf("URL: %w", err))
			case p.Host == "":
				errs = append(errs, fmt.Errorf("URL: %q has no host (want nats://host:4222)", u))
			}
		}
		if c.Listen != "" {
			errs = append(errs, errors.New("Listen: exposes the embedded server; it does not apply to an external one"))
		}
		if err := c.Auth.Validate(); err != nil {
			errs = append(errs, fmt.Errorf("Auth: %w", err))
		}
	}
	if c.Listen != "" {
		if _, _, err := splitHostPort(c.Listen); err != nil {
			errs = append(errs, fmt.Errorf("Listen: %w", err))
		}
	}
	if (c.ListenCertFile == "") != (c.ListenKeyFile == "") {
		errs = append(errs, errors.New("ListenCertFile: a certificate and its key go together"))
	}
	if c.Replicas < 0 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("Replicas: %d, want 1 to 5", c.Replicas))
	}
	if c.DuplicateWindow < 0 {
		errs = append(errs, fmt.Errorf("DuplicateWindow: %v is negative", c.DuplicateWindow))
	}
	dup := c.DuplicateWindow
	if dup == 0 {
		dup = 10 * time.Minute
	}
	switch {
	case c.MaxAge < 0:
		errs = append(errs, fmt.Errorf("MaxAge: %v is negative", c.MaxAge))
	case c.MaxAge > 0 && c.MaxAge < dup:
		// JetStream refuses a duplicate window longer than the age limit.
		errs = append(errs, fmt.Errorf("MaxAge: %v is shorter than the duplicate window %v", c.MaxAge, dup))
	}
	if c.LapsedConsumer < 0 {
		errs = append(errs, fmt.Errorf("LapsedConsumer: %v is negative", c.LapsedConsumer))
	}
	return errors.Join(errs...)
}
