// Command checkrules checks Prometheus rule files with Prometheus's own
// rule library (what `promtool check rules` runs: the YAML, each rule's
// fields, and each expression through the PromQL parser), without building
// all of promtool, whose service discovery alone takes minutes to compile.
//
//	checkrules deploy/observability/alerts.yaml ...
package main

import (
	"fmt"
	"log/slog"
	"os"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	"github.com/prometheus/prometheus/promql/parser"
)

func main() {
	failed := len(os.Args) < 2
	for _, file := range os.Args[1:] {
		groups, errs := rulefmt.ParseFile(file, false, model.UTF8Validation, parser.NewParser(parser.Options{}), slog.New(slog.DiscardHandler))
		for _, err := range errs {
			failed = true
			fmt.Fprintf(os.Stderr, "%s: %v\n", file, err)
		}
		if len(errs) > 0 {
			continue
		}
		n := 0
		for _, g := range groups.Groups {
			n += len(g.Rules)
		}
		fmt.Printf("%s: %d rules in %d groups\n", file, n, len(groups.Groups))
	}
	if failed {
		os.Exit(1)
	}
}
