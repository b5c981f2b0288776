// Command proofline is the evidence and observability pipeline behind an
// MCP control plane: one binary for the server (serve), operators' tools
// (token, keygen) and auditors' offline verification (verify).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/proofline/proofline/ledger"
	"github.com/proofline/proofline/ledger/verify"
)

// Exit codes shared by every subcommand; verify documents 1 as "did not
// verify".
const (
	exitOK       = 0
	exitMismatch = 1
	exitUsage    = 2
)

// errUsage marks an error as the caller's mistake (exit 2 with usage).
var errUsage = errors.New("usage")

const usage = `proofline: signed evidence and observability for MCP tool calls

Usage:
  proofline serve   [--data DIR] [--listen ADDR] [--nats URL] ...   run the server (all roles)
  proofline token issue --data DIR --principal P --scope ingest|query|admin --ttl 1h
  proofline keygen  --origin ORIGIN --out DIR                         make a log signing key pair
  proofline verify  --bundle FILE --key FILE                          verify a proof bundle offline
  proofline verify  --log URL --key FILE [--state FILE] [--token T]  audit a live log
                    (both take --witness-policy FILE: require its quorum's cosignatures)
  proofline monitor --log URL --key FILE --state FILE [--witness-policy FILE] [--interval 1m]
                                                                     follow a live log; exit 1 on a fork or rollback
  proofline archive --log URL|--data DIR [--from N] [--to M] --out FILE.tar.zst [--key FILE] [--previous FILE]
                                                                     take an evidence archive of a range of the log
  proofline verify  --archive FILE --key FILE [--record ID] [--previous FILE]
                                                                     verify an evidence archive offline
  proofline kpi latency|errorbudget|cost|plans|onboarding --server URL --token T [--from T --to T --step 1h] [--at T] [--json]
  proofline export run --exporters FILE (--data DIR | --log URL --key FILE) [--nats URL]   deliver the log to SIEMs and files
  proofline export status|replay|deadletters ...                      inspect and steer the exporters
  proofline policy test [-v] FILE                                    run an MCP hook policy's test cases
  proofline catalog check (--url URL | -- COMMAND ARGS...)           check an MCP server's tools as agents see them
  proofline catalog list --server URL --token T [--json]             the tools servers offered: owners, versions, drift
  proofline report --server URL --token T [--week 2026-W48] --out report.html   the weekly SRE report, one HTML file
  proofline dlq list --server URL --token T [--reason conflict] [--json]  records no consumer could take, and why
  proofline version

Run 'proofline COMMAND -h' for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	var err error
	code := exitOK
	switch args[0] {
	case "serve":
		err = cmdServe(ctx, args[1:], stderr)
	case "token":
		err = cmdToken(args[1:], stdout, stderr)
	case "keygen":
		err = cmdKeygen(args[1:], stdout, stderr)
	case "verify":
		code, err = cmdVerify(ctx, args[1:], stdout, stderr)
	case "archive":
		err = cmdArchive(ctx, args[1:], stdout, stderr)
	case "monitor":
		code, err = cmdMonitor(ctx, args[1:], stdout, stderr)
	case "kpi":
		err = cmdKPI(ctx, args[1:], stdout, stderr)
	case "export":
		code, err = cmdExport(ctx, args[1:], stdout, stderr)
	case "policy":
		code, err = cmdPolicy(args[1:], stdout, stderr)
	case "dlq":
		err = cmdDLQ(ctx, args[1:], stdout, stderr)
	case "catalog":
		code, err = cmdCatalog(ctx, args[1:], stdout, stderr)
	case "report":
		err = cmdReport(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "proofline", version)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "proofline: unknown command %q\n\n%s", args[0], usage)
		return exitUsage
	}
	switch {
	case err == nil:
		return code
	case errors.Is(err, flag.ErrHelp):
		return exitOK
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "proofline %s: %v\n", args[0], err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "proofline %s: %v\n", args[0], err)
		if errors.Is(err, ledger.ErrIntegrity) || verify.IsMismatch(err) {
			// As verify: the log does not match what it signed (or, for
			// archive --previous, what it signed before).
			code = exitMismatch
		}
		if code == exitOK {
			code = exitUsage
		}
		return code
	}
}

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("proofline "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses and rejects stray positional arguments.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	return nil
}
