package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"

	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/sampledata"
	"github.com/sluicehq/sluice/pkg/testenv"
)

// cli runs the real sluice binary against a running serve.
type cli struct {
	t   *testing.T
	bin string
	env []string
}

// result is what one run printed and how it exited.
type result struct {
	stdout, stderr string
	code           int
}

func (c *cli) run(args ...string) result {
	c.t.Helper()
	cmd := exec.Command(c.bin, args...)
	cmd.Env = c.env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return result{out.String(), errb.String(), code}
}

// must runs and expects exit code want.
func (c *cli) must(want int, args ...string) result {
	c.t.Helper()
	r := c.run(args...)
	if r.code != want {
		c.t.Fatalf("sluice %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
	}
	return r
}

func (c *cli) json(r result, v any) {
	c.t.Helper()
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		c.t.Fatalf("-o json printed what is not JSON (%v):\n%s", err, r.stdout)
	}
}

// buildSluice builds the sluice binary once per test binary.
func buildSluice(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "sluice")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// The sluice binary against sluice serve and MinIO, as a person and a
// script use it: create and test a credential, create destinations,
// deliver a CSV file and a Parquet file (each read back from MinIO),
// list, fail a delivery to a misspelled bucket, see its workflow and
// notification, fix the destination and resolve; exit codes and -o json
// checked at each step, errors printed with reason and field violations.
func TestCLI(t *testing.T) {
	m := testenv.SharedMinIO(t)
	bucket := testenv.NewBucket(t, m)
	r := startServeWith(t, func(c *serveConfig) { c.useMinIO(m) })
	key, secret := "SLUICECLIUSER"+strings.ToUpper(bucket[len(bucket)-6:]), "sluice-cli-secret-"+bucket
	if err := testenv.SetMinIOUser(context.Background(), m, key, secret,
		`{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":["s3:*"],"Resource":["arn:aws:s3:::*"]}]}`); err != nil {
		t.Fatal(err)
	}
	token, err := r.users.Mint("cli@acme.test", "acme", []string{auth.PolicyAdministrator}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	store := &delivering{m: m, bucket: bucket} // reads objects back
	c := &cli{t: t, bin: buildSluice(t), env: append(os.Environ(),
		"SLUICE_CREDENTIAL_ADDR="+r.addrs["credential"], "SLUICE_DESTINATION_ADDR="+r.addrs["destination"], "SLUICE_DELIVERY_ADDR="+r.addrs["delivery"],
		"SLUICE_TOKEN="+token, "SLUICE_CONFIG="+filepath.Join(t.TempDir(), "none.yaml"), "MINIO_SECRET="+secret)}

	out := c.must(0, "credential", "create", "minio", "--bucket", bucket, "--region", m.Region, "--access-key-id", key, "--secret-from-env", "MINIO_SECRET")
	if !regexp.MustCompile(`secret set\s+true`).MatchString(out.stdout) {
		t.Errorf("credential create:\n%s", out.stdout)
	}
	if strings.Contains(out.stdout+out.stderr, secret) {
		t.Fatal("the CLI printed the secret key")
	}
	test := c.must(0, "credential", "test", "minio")
	if !strings.Contains(test.stdout, "PASSED") || strings.Contains(test.stdout, "FAILED") {
		t.Errorf("credential test:\n%s", test.stdout)
	}
	var creds []map[string]any
	c.json(c.must(0, "credential", "list", "-o", "json"), &creds)
	if len(creds) != 1 || creds[0]["name"] != "tenants/acme/environments/production/credentials/minio" {
		t.Errorf("credential list -o json: %v", creds)
	}
	c.must(0, "destination", "create", "c360", "--credential", "minio", "--format", "csv", "--compression", "gzip", "--prefix", "cli/csv/",
		"--filename-template", "c360_{{file_number}}.csv.gz", "--success-file")
	// From a settings file: Parquet.
	settings := filepath.Join(t.TempDir(), "pq.yaml")
	if err := os.WriteFile(settings, []byte("credential: tenants/acme/environments/production/credentials/minio\nprefix: cli/pq/\nformat:\n  parquet:\n    codec: PARQUET_CODEC_ZSTD\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.must(0, "destination", "create", "pq", "--from-file", settings)
	var dests []map[string]any
	c.json(c.must(0, "destination", "list", "-o", "yaml", "-o", "json"), &dests)
	if len(dests) != 2 {
		t.Errorf("destination list: %v", dests)
	}

	// A CSV file, types inferred.
	dir := t.TempDir()
	csvFile := filepath.Join(dir, "customers.csv")
	var b strings.Builder
	b.WriteString("customer_id,email,lifetime_value,active\n")
	for i := range 5000 {
		fmt.Fprintf(&b, "%d,c%d@example.com,%d.25,%v\n", i, i, i, i%2 == 0)
	}
	if err := os.WriteFile(csvFile, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	res := c.must(0, "deliver", csvFile, "--destination", "c360", "--output-name", "customers", "-o", "json", "--progress", "lines")
	var d struct {
		Name     string `json:"name"`
		State    string `json:"state"`
		Progress struct {
			Rows string `json:"rows"`
		} `json:"progress"`
		Objects []struct {
			Key  string `json:"key"`
			Kind string `json:"kind"`
		} `json:"objects"`
	}
	c.json(res, &d)
	if d.State != "DELIVERY_STATE_SUCCEEDED" || d.Progress.Rows != "5000" || len(d.Objects) != 2 {
		t.Fatalf("deliver the CSV file: %s", res.stdout)
	}
	if lines := strings.Split(strings.TrimSpace(res.stderr), "\n"); !strings.HasPrefix(lines[len(lines)-1], "sent 5000 rows") || strings.Contains(res.stderr, "\r") {
		t.Errorf("progress without a terminal is lines ending with the totals:\n%q", res.stderr)
	}
	obj := store.get(t, d.Objects[0].Key)
	zr, err := gzip.NewReader(bytes.NewReader(obj))
	if err != nil {
		t.Fatal(err)
	}
	records, err := csv.NewReader(zr).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(records) != 5001 || strings.Join(records[0], ",") != "customer_id,email,lifetime_value,active" || records[4000][1] != "c3999@example.com" || records[2][3] != "false" {
		t.Errorf("the CSV that landed: %d lines, header %v, row 4000 %v", len(records), records[0], records[min(4000, len(records)-1)])
	}

	// A Parquet file.
	pqFile := filepath.Join(dir, "c360.parquet")
	writeParquet(t, pqFile, 20_000)
	c.json(c.must(0, "deliver", pqFile, "--destination", "pq", "-o", "json", "--progress", "none"), &d)
	if d.State != "DELIVERY_STATE_SUCCEEDED" || d.Progress.Rows != "20000" {
		t.Fatalf("deliver the Parquet file: %+v", d)
	}
	pf, err := file.NewParquetReader(bytes.NewReader(store.get(t, d.Objects[0].Key)))
	if err != nil {
		t.Fatal(err)
	}
	if pf.NumRows() != 20_000 || pf.MetaData().Schema.NumColumns() != 20 {
		t.Errorf("the Parquet that landed: %d rows, %d columns", pf.NumRows(), pf.MetaData().Schema.NumColumns())
	}
	// An Arrow IPC stream file, sent as it is; and the CSV again with a
	// column's type overridden (customer_id as text keeps its digits).
	recs := customerBatches(t, 3000, 1000)
	arrowFile := filepath.Join(dir, "c360.arrows")
	if err := os.WriteFile(arrowFile, ipcBytes(t, recs[0].Schema(), recs...), 0o600); err != nil {
		t.Fatal(err)
	}
	c.json(c.must(0, "deliver", arrowFile, "--destination", "pq", "-o", "json", "--progress", "none"), &d)
	if d.State != "DELIVERY_STATE_SUCCEEDED" || d.Progress.Rows != "3000" {
		t.Fatalf("deliver the Arrow IPC stream: %+v", d)
	}
	c.json(c.must(0, "deliver", csvFile, "--destination", "pq", "--csv-type", "customer_id=string", "-o", "json", "--progress", "none"), &d)
	pf, err = file.NewParquetReader(bytes.NewReader(store.get(t, d.Objects[0].Key)))
	if err != nil {
		t.Fatal(err)
	}
	if col := pf.MetaData().Schema.Column(0); col.Name() != "customer_id" || col.PhysicalType() != parquet.Types.ByteArray {
		t.Errorf("--csv-type customer_id=string: the column landed as %s %s", col.Name(), col.PhysicalType())
	}
	c.must(exitInvalid, "deliver", csvFile, "--destination", "pq", "--csv-type", "customer_id=decimal")

	var delivs []map[string]any
	c.json(c.must(0, "delivery", "list", "-o", "json", "--filter", "state = SUCCEEDED"), &delivs)
	if len(delivs) != 4 {
		t.Errorf("delivery list: %d deliveries", len(delivs))
	}

	// A misspelled bucket: the delivery fails (exit 4) and says why.
	c.must(0, "destination", "create", "typo", "--credential", "minio", "--format", "csv", "--prefix", "cli/typo/", "--bucket-override", bucket+"-typo")
	failed := c.must(exitDeliveryFailed, "deliver", csvFile, "--destination", "typo", "--progress", "none")
	if !strings.Contains(failed.stderr, "BUCKET_NOT_FOUND") || !strings.Contains(failed.stderr, "delivery: tenants/acme/environments/production/deliveries/") {
		t.Fatalf("a failed delivery's error:\n%s", failed.stderr)
	}
	delivery := failed.stderr[strings.Index(failed.stderr, "delivery: ")+len("delivery: "):]
	delivery = strings.TrimSpace(strings.SplitN(delivery, "\n", 2)[0])
	show := c.must(0, "workflow", "show", last(delivery))
	for _, want := range []string{"FAILED", "step upload", "BUCKET_NOT_FOUND", "resolution [fix-bucket-name]", "1. Open the AWS management console", "resolution [retry-task]"} {
		if !strings.Contains(show.stdout, want) {
			t.Errorf("workflow show lacks %q:\n%s", want, show.stdout)
		}
	}
	if n := c.must(0, "notification", "list"); !strings.Contains(n.stdout, "Delivery to typo failed") {
		t.Errorf("notification list:\n%s", n.stdout)
	}
	var flows []map[string]any
	c.json(c.must(0, "workflow", "list", "--filter", "state = FAILED", "-o", "json"), &flows)
	if len(flows) != 1 {
		t.Errorf("failed workflows: %v", flows)
	}
	c.must(0, "destination", "update", "typo", "--bucket-override", "")
	resolved := c.must(0, "workflow", "resolve", last(delivery), "fix-bucket-name", "-o", "json")
	c.json(resolved, &d)
	if d.State != "DELIVERY_STATE_SUCCEEDED" || d.Progress.Rows != "5000" {
		t.Errorf("the resolution: %s", resolved.stdout)
	}

	// watch follows a delivery to its end; the resolved one has ended.
	watched := c.must(0, "delivery", "watch", last(delivery), "--every", "100ms")
	if !strings.Contains(watched.stderr, "SUCCEEDED") || !strings.Contains(watched.stdout, "state") {
		t.Errorf("delivery watch:\nstdout %s\nstderr %s", watched.stdout, watched.stderr)
	}

	// login keeps a token and the address in a config file the other
	// commands read, with nothing given on the command line or in SLUICE_*.
	cfgFile := filepath.Join(t.TempDir(), "config.yaml")
	c.must(0, "login", "--data-dir", r.dataDir, "--subject", "me@acme.test", "--config", cfgFile)
	if fi, err := os.Stat(cfgFile); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("the config file: %v %v", fi, err)
	}
	bare := &cli{t: t, bin: c.bin, env: []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH"), "SLUICE_CONFIG=" + cfgFile,
		"SLUICE_CREDENTIAL_ADDR=" + r.addrs["credential"]}}
	if got := bare.must(0, "credential", "list"); !strings.Contains(got.stdout, "minio") {
		t.Errorf("credential list with the config file's token:\n%s", got.stdout)
	}

	// Errors: invalid input, not found, unavailable; each its exit code.
	bad := c.must(exitInvalid, "credential", "create", "bad", "--bucket", "Not_A_Bucket", "--access-key-id", key, "--secret-from-env", "MINIO_SECRET")
	if !strings.Contains(bad.stderr, "InvalidArgument") || !strings.Contains(bad.stderr, "  - credential.bucket: ") {
		t.Errorf("an invalid request's error:\n%s", bad.stderr)
	}
	c.must(exitInvalid, "destination", "create", "x", "--credential", "minio", "--format", "xml")
	c.must(exitInvalid, "deliver", csvFile)
	c.must(exitInvalid, "delivery", "list", "--no-such-flag")
	c.must(exitNotFound, "delivery", "get", "d-nope")
	c.must(exitNotFound, "credential", "get", "tenants/acme/environments/production/credentials/minio", "--token", "not-a-token-at-all.x.y")
	c.must(exitUnavailable, "delivery", "list", "--delivery-addr", "127.0.0.1:1", "--timeout", "3s")
	if out := c.run("credential", "get", "minio"); strings.Contains(out.stdout+out.stderr, "goroutine") {
		t.Errorf("a stack trace reached the user:\n%s", out.stderr)
	}
}

// The progress bar redraws in place on a terminal: the CLI runs under a
// pty (util-linux script) and its output carries carriage returns.
func TestCLIProgressBarOnATerminal(t *testing.T) {
	if _, err := exec.LookPath("script"); err != nil {
		t.Fatalf("script (util-linux) is missing, which runs the CLI under a pty: apt-get install bsdutils (%v)", err)
	}
	w := startDelivering(t, nil)
	w.destination(t, "bar", &destinationv1.Destination{Format: csvFormat()})
	token, err := w.r.users.Mint("cli@acme.test", "acme", []string{auth.PolicyAdministrator}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pqFile := filepath.Join(t.TempDir(), "c360.parquet")
	writeParquet(t, pqFile, 200_000)
	bin := buildSluice(t)
	line := fmt.Sprintf("%s deliver %s --destination bar --delivery-addr %s --token %s --config /nonexistent -o json > %s",
		bin, pqFile, w.r.addrs["delivery"], token, filepath.Join(t.TempDir(), "answer.json"))
	cmd := exec.Command("script", "-qec", line, "/dev/null")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("under a pty: %v\n%s", err, out)
	}
	if !bytes.Contains(out, []byte("\r")) || !bytes.Contains(out, []byte("sent 200000 rows")) {
		t.Errorf("on a terminal the bar redraws in place and ends with the totals:\n%q", out)
	}
}

// writeParquet writes rows of the customer 360 table to path.
func writeParquet(t *testing.T, path string, rows int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rr := sampledata.NewCustomer360(nil, rows, 5000, 1)
	defer rr.Release()
	w, err := pqarrow.NewFileWriter(rr.Schema(), f, parquet.NewWriterProperties(), pqarrow.DefaultWriterProps())
	if err != nil {
		t.Fatal(err)
	}
	for rr.Next() {
		if err := w.WriteBuffered(rr.RecordBatch()); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}
