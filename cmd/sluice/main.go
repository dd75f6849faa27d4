// Command sluice is Sluice's command-line client and local runner:
// `sluice serve` runs the three services in one process, `sluice demo` runs
// them end to end against a local MinIO, `sluice token` mints development
// tokens, and `sluice health` checks running services.
package main

import (
	"os"
)

func main() {
	if err := rootCommand().Execute(); err != nil {
		printError(os.Stderr, err)
		os.Exit(exitCode(err))
	}
}
