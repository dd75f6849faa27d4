package testenv

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sluicehq/sluice/pkg/localserver"
)

// DuckDB runs queries in DuckDB (for Node, installed by `make tools` in
// tools/duckdb), a reader that is not ours, and answers each query's rows
// as DuckDB's JSON rendering of them.
func DuckDB(tb testing.TB, queries ...string) [][]map[string]any {
	tb.Helper()
	dir := filepath.Join(localserver.ToolsDir(), "duckdb")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "@duckdb", "node-api")); err != nil {
		tb.Fatalf("DuckDB for Node is not installed in %s: run `make tools` (it needs node and npm: apt-get install nodejs npm)", dir)
	}
	if _, err := exec.LookPath("node"); err != nil {
		tb.Fatal("node is not on PATH: apt-get install nodejs")
	}
	script, err := os.CreateTemp(dir, "query-*.mjs")
	if err != nil {
		tb.Fatal(err)
	}
	defer os.Remove(script.Name())
	fmt.Fprint(script, `import { DuckDBInstance } from '@duckdb/node-api';
import { readFileSync } from 'node:fs';
const queries = JSON.parse(readFileSync(0, 'utf8'));
const db = await DuckDBInstance.create(':memory:');
const c = await db.connect();
const out = [];
for (const q of queries) out.push((await c.runAndReadAll(q)).getRowObjectsJson());
console.log(JSON.stringify(out));
`)
	script.Close()
	in, _ := json.Marshal(queries)
	cmd := exec.Command("node", script.Name())
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("duckdb: %v\n%s", err, stderr.String())
	}
	var rows [][]map[string]any
	if err := json.Unmarshal(out, &rows); err != nil {
		tb.Fatalf("duckdb answered %q: %v", out, err)
	}
	return rows
}

// SQLString quotes s as a SQL string literal.
func SQLString(s string) string { return "'" + strings.ReplaceAll(s, "'", "''") + "'" }
