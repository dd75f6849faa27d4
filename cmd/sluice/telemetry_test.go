package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	otelcodes "go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	oteltrace "go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"gopkg.in/yaml.v3"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/deliverclient"
	"github.com/sluicehq/sluice/pkg/localserver"
	"github.com/sluicehq/sluice/pkg/testenv"
)

// scrape reads url's Prometheus text, as Prometheus would.
func scrape(t *testing.T, url string) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s %v", url, resp.Status, err)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("parse the scrape: %v\n%s", err, body)
	}
	return fams, string(body)
}

// sum adds up the samples of a family whose labels include labels
// (counters and gauges; histograms by their count).
func sum(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	var total float64
	f := fams[name]
	if f == nil {
		return -1
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(labels); i += 2 {
			if have[labels[i]] != labels[i+1] {
				continue next
			}
		}
		switch {
		case m.GetCounter() != nil:
			total += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			total += m.GetGauge().GetValue()
		case m.GetHistogram() != nil:
			total += float64(m.GetHistogram().GetSampleCount())
		}
	}
	return total
}

// After a delivery that lands and one that fails, /metrics counts both by
// format and outcome (the failure by its reason), and the rows, bytes in
// and out and parts equal what the two deliveries answer; the pool's size
// and the credential service's mints are there too. No label carries a
// resource name.
func TestMetricsCountDeliveries(t *testing.T) {
	w := startWorkflows(t, func(c *serveConfig) {
		c.MetricsAddr = "127.0.0.1:0"
		c.Delivery.PartSize = 5 << 20
	})
	if w.r.metrics == "" {
		t.Fatal("serve did not say where /metrics is")
	}
	w.mayUseAnyBucket(t)
	ctx := context.Background()
	recs := customerBatches(t, 30_000, 3000)
	stream := ipcBytes(t, recs[0].Schema(), recs...)
	ok := w.destination(t, "landed", &destinationv1.Destination{Format: csvFormat()})
	landed, err := deliverclient.DeliverStream(ctx, w.delivs, &deliveryv1.DeliveryStart{Destination: ok.GetName(), OutputName: "out"}, bytes.NewReader(stream),
		deliverclient.Options{CallOptions: []grpc.CallOption{w.admin}})
	if err != nil {
		t.Fatal(err)
	}
	typo := w.destination(t, "typo", &destinationv1.Destination{Format: csvFormat(), BucketOverride: w.bucket + "-typo"})
	failed := w.failedDelivery(t, typo.GetName(), stream, errorsv1.ErrorReason_ERROR_REASON_BUCKET_NOT_FOUND)

	fams, text := scrape(t, w.r.metrics)
	check := func(what string, got, want float64) {
		t.Helper()
		if got != want {
			t.Errorf("%s: %v, want %v", what, got, want)
		}
	}
	check("deliveries started", sum(fams, "sluice_delivery_started_total", "sluice_format", "csv"), 2)
	check("deliveries succeeded", sum(fams, "sluice_delivery_completed_total", "sluice_format", "csv", "sluice_outcome", "succeeded"), 1)
	check("deliveries failed with BUCKET_NOT_FOUND", sum(fams, "sluice_delivery_completed_total", "sluice_outcome", "failed", "error_type", "BUCKET_NOT_FOUND"), 1)
	check("delivery durations", sum(fams, "sluice_delivery_duration_seconds"), 2)
	check("deliveries running", sum(fams, "sluice_delivery_active"), 0)
	both := func(f func(*deliveryv1.DeliveryProgress) int64) float64 {
		return float64(f(landed.GetProgress()) + f(failed.GetProgress()))
	}
	check("rows", sum(fams, "sluice_delivery_rows_total"), both((*deliveryv1.DeliveryProgress).GetRows))
	check("bytes in", sum(fams, "sluice_delivery_io_bytes_total", "sluice_io_direction", "in"), both((*deliveryv1.DeliveryProgress).GetBytesIn))
	check("bytes out", sum(fams, "sluice_delivery_io_bytes_total", "sluice_io_direction", "out"), both((*deliveryv1.DeliveryProgress).GetBytesOut))
	check("parts", sum(fams, "sluice_delivery_parts_total"), both((*deliveryv1.DeliveryProgress).GetParts))
	if landed.GetProgress().GetRows() != 30_000 || landed.GetProgress().GetBytesOut() == 0 {
		t.Errorf("the landed delivery's progress: %v", landed.GetProgress())
	}
	// Every part and single-request object timed: the landed delivery's,
	// and the failed one's that S3 refused (none landed).
	check("parts timed", sum(fams, "sluice_upload_part_duration_seconds", "sluice_landed", "true"), float64(landed.GetProgress().GetParts()))
	check("part buffer pool", sum(fams, "sluice_delivery_part_buffers_limit_bytes"), float64(8*(5<<20)))
	check("part buffers held between deliveries", sum(fams, "sluice_delivery_part_buffers_used_bytes"), 0)
	if n := sum(fams, "sluice_credential_access_mints_total", "sluice_outcome", "succeeded"); n < 2 {
		t.Errorf("credential access mints: %v, want at least the two deliveries'", n)
	}
	// On disk, staged input carries its chunks' framing (length, CRC32C).
	if n, kept := sum(fams, "sluice_delivery_staging_used_bytes"), float64(failed.GetStagedInput().GetBytes()); n < kept || n > kept+64<<10 {
		t.Errorf("staging holds %v bytes, the failed delivery keeps %v", n, kept)
	}
	for _, leak := range []string{"tenants/", "acme", w.bucket, w.key} {
		if strings.Contains(text, leak) {
			t.Errorf("/metrics carries %q", leak)
		}
	}
	if t.Failed() {
		t.Logf("scrape:\n%s", text)
	}
}

// syncBuffer collects a process's logs from every goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// traced is a delivering environment whose spans, metrics and logs the
// test keeps.
type traced struct {
	*workflows
	spans *tracetest.SpanRecorder
	logs  *syncBuffer
}

func startTraced(t *testing.T) *traced {
	t.Helper()
	rec, logs := tracetest.NewSpanRecorder(), &syncBuffer{}
	w := startWorkflows(t, func(c *serveConfig) {
		c.Telemetry.SpanProcessors = []sdktrace.SpanProcessor{rec}
		c.LogOutput, c.LogLevel = logs, "debug"
		c.MetricsAddr = "127.0.0.1:0"
		c.Delivery.PartSize = 5 << 20
	})
	return &traced{workflows: w, spans: rec, logs: logs}
}

// trace answers the ended spans of the trace a span named root (a server
// span of a request) began, for the first such root whose trace holds a
// span named within.
func (tr *traced) trace(t *testing.T, root string, within ...string) (sdktrace.ReadOnlySpan, []sdktrace.ReadOnlySpan) {
	t.Helper()
	// Spans of work that goes on after the call answers (a resolution's
	// rerun) end later: wait for them rather than read once (#22).
	var all []sdktrace.ReadOnlySpan
	for range 300 {
		all = tr.spans.Ended()
		for _, r := range all {
			if r.Name() != root {
				continue
			}
			var in []sdktrace.ReadOnlySpan
			found := map[string]bool{}
			for _, s := range all {
				if s.SpanContext().TraceID() == r.SpanContext().TraceID() {
					in = append(in, s)
					found[s.Name()] = true
				}
			}
			missing := false
			for _, w := range within {
				missing = missing || !found[w]
			}
			if !missing {
				return r, in
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("no trace from a %q span holds %q; spans: %v", root, within, names(all))
	return nil, nil
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

// checkTree checks that spans form one tree under root: every span but
// the root has its parent among them.
func checkTree(t *testing.T, root sdktrace.ReadOnlySpan, spans []sdktrace.ReadOnlySpan) {
	t.Helper()
	ids := map[oteltrace.SpanID]string{}
	for _, s := range spans {
		ids[s.SpanContext().SpanID()] = s.Name()
	}
	for _, s := range spans {
		if s.SpanContext().SpanID() == root.SpanContext().SpanID() {
			if s.Parent().IsValid() {
				t.Errorf("the root %q has a parent", s.Name())
			}
			continue
		}
		if _, ok := ids[s.Parent().SpanID()]; !ok {
			t.Errorf("span %q has no parent in the trace (parent %s)", s.Name(), s.Parent().SpanID())
		}
	}
}

func count(spans []sdktrace.ReadOnlySpan, name string) int {
	n := 0
	for _, s := range spans {
		if s.Name() == name {
			n++
		}
	}
	return n
}

// parentName answers the name of span's parent among spans.
func parentName(spans []sdktrace.ReadOnlySpan, s sdktrace.ReadOnlySpan) string {
	for _, p := range spans {
		if p.SpanContext().SpanID() == s.Parent().SpanID() {
			return p.Name()
		}
	}
	return ""
}

// One delivery is one trace across the three services: the Deliver
// request's server span is its root, the destination service's
// ResolveDestination and the credential service's MintAccess (each with
// its own span inside) are in it, and so are the delivery's run, its
// workflow steps, one span per part uploaded (with its number, bytes and
// attempts, and S3's own span under it) and the completion. A failed
// delivery resolved later: the resolution's trace holds its run, which
// links to the first trace.
func TestTraceOfOneDelivery(t *testing.T) {
	tr := startTraced(t)
	tr.mayUseAnyBucket(t)
	ctx := context.Background()
	recs := customerBatches(t, 60_000, 4000)
	stream := ipcBytes(t, recs[0].Schema(), recs...)
	dest := tr.destination(t, "traced", &destinationv1.Destination{Format: csvFormat(), SuccessFile: true})
	d, err := deliverclient.DeliverStream(ctx, tr.delivs, &deliveryv1.DeliveryStart{Destination: dest.GetName(), OutputName: "out"}, bytes.NewReader(stream),
		deliverclient.Options{CallOptions: []grpc.CallOption{tr.admin}})
	if err != nil {
		t.Fatal(err)
	}
	root, spans := tr.trace(t, "sluice.delivery.v1.DeliveryService/Deliver", "delivery run")
	checkTree(t, root, spans)
	if got := root.SpanContext().TraceID().String(); !strings.Contains(d.GetTraceParent(), got) {
		t.Errorf("the delivery's trace_parent %q does not name its trace %s", d.GetTraceParent(), got)
	}
	for _, want := range []string{
		"sluice.destination.v1.DestinationService/ResolveDestination", "resolve destination",
		"sluice.credential.v1.CredentialAccessService/MintAccess", "mint access",
		"delivery run", "step get_access", "step check_destination", "step convert", "step upload", "step finish",
		"complete upload", "S3.CompleteMultipartUpload", "S3.PutObject",
		"sluice.destination.v1.DestinationService/RecordDelivery", "stage input",
	} {
		if count(spans, want) == 0 {
			t.Errorf("the delivery's trace has no %q span", want)
		}
	}
	var parts int64
	for _, obj := range d.GetObjects() {
		if obj.GetParts() > 1 {
			parts += obj.GetParts()
		}
	}
	if parts < 2 || count(spans, "upload part") != int(parts) {
		t.Errorf("%d upload part spans, the delivery answers %d parts", count(spans, "upload part"), parts)
	}
	for _, s := range spans {
		switch s.Name() {
		case "upload part":
			attrs := map[string]int64{}
			for _, kv := range s.Attributes() {
				attrs[string(kv.Key)] = kv.Value.AsInt64()
			}
			if attrs["sluice.part.number"] < 1 || attrs["sluice.part.bytes"] < 5<<20 && attrs["sluice.part.number"] < int64(parts) || attrs["sluice.part.attempts"] != 1 {
				t.Errorf("part span attributes: %v", attrs)
			}
		case "S3.UploadPart":
			if p := parentName(spans, s); p != "upload part" {
				t.Errorf("S3's UploadPart span is under %q", p)
			}
		case "mint access":
			if p := parentName(spans, s); p != "sluice.credential.v1.CredentialAccessService/MintAccess" {
				t.Errorf("the mint access span is under %q", p)
			}
		case "step get_access", "step upload":
			if p := parentName(spans, s); p != "delivery run" {
				t.Errorf("%s is under %q", s.Name(), p)
			}
		}
	}

	// Failed, then resolved.
	typo := tr.destination(t, "traced-typo", &destinationv1.Destination{Format: csvFormat(), BucketOverride: tr.bucket + "-typo"})
	failed := tr.failedDelivery(t, typo.GetName(), stream, errorsv1.ErrorReason_ERROR_REASON_BUCKET_NOT_FOUND)
	var first []sdktrace.ReadOnlySpan
	var failedTrace oteltrace.TraceID
	for _, s := range tr.spans.Ended() {
		if id := s.SpanContext().TraceID(); strings.Contains(failed.GetTraceParent(), id.String()) {
			first, failedTrace = append(first, s), id
		}
	}
	if count(first, "step upload") != 1 {
		t.Fatalf("the failed delivery's trace (trace_parent %q): %v", failed.GetTraceParent(), names(first))
	}
	for _, s := range first {
		if s.Name() == "step upload" && s.Status().Code != otelcodes.Error {
			t.Errorf("the failed upload step's span has status %v", s.Status())
		}
	}
	if _, err := tr.dests.UpdateDestination(ctx, &destinationv1.UpdateDestinationRequest{
		Destination: &destinationv1.Destination{Name: typo.GetName(), BucketOverride: tr.bucket},
		UpdateMask:  &fieldmaskpb.FieldMask{Paths: []string{"bucket_override"}},
	}, tr.admin); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.resolve(ctx, tr.workflow(t, failed.GetWorkflow()), "fix-bucket-name"); err != nil {
		t.Fatal(err)
	}
	resRoot, resolution := tr.trace(t, "sluice.delivery.v1.WorkflowService/ResolveWorkflow", "resolve workflow", "delivery run")
	checkTree(t, resRoot, resolution)
	if resRoot.SpanContext().TraceID() == failedTrace {
		t.Fatal("the resolution ran in the failed delivery's trace")
	}
	linked := false
	for _, s := range resolution {
		if s.Name() != "delivery run" {
			continue
		}
		if p := parentName(resolution, s); p != "resolve workflow" {
			t.Errorf("the resolution's run is under %q", p)
		}
		for _, l := range s.Links() {
			linked = linked || l.SpanContext.TraceID() == failedTrace
		}
	}
	if !linked {
		t.Errorf("the resolution's run does not link to the failed delivery's trace (its trace_parent %q)", failed.GetTraceParent())
	}
	if count(resolution, "upload part")+count(resolution, "put object") == 0 {
		t.Errorf("the resolution's trace has no upload: %v", names(resolution))
	}
}

// Nothing Sluice exports carries a secret: through a delivery that lands,
// one whose credential holds a wrong secret key, and one to a misspelled
// bucket resolved later, every span (names, attributes, events, status),
// the whole /metrics scrape and every log line at debug level are
// searched for the credential's secret keys, the caller's token, and the
// session the credential service minted. The request's log lines carry
// the trace, the caller's subject and the delivery.
func TestTelemetryCarriesNoSecrets(t *testing.T) {
	tr := startTraced(t)
	tr.mayUseAnyBucket(t)
	ctx := context.Background()
	token, err := tr.r.users.Mint("operator@acme.test", "acme", []string{auth.PolicyAdministrator}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	as := grpc.PerRPCCredentials(auth.BearerCredentials(token))
	opts := deliverclient.Options{CallOptions: []grpc.CallOption{as}}
	recs := customerBatches(t, 20_000, 2000)
	stream := ipcBytes(t, recs[0].Schema(), recs...)

	ok := tr.destination(t, "kept", &destinationv1.Destination{Format: csvFormat(), SuccessFile: true})
	landed, err := deliverclient.DeliverStream(ctx, tr.delivs, &deliveryv1.DeliveryStart{Destination: ok.GetName(), OutputName: "out"}, bytes.NewReader(stream), opts)
	if err != nil {
		t.Fatal(err)
	}
	wrong := "not-the-secret-" + tr.secret
	cred, err := tr.creds.CreateCredential(ctx, &credentialv1.CreateCredentialRequest{Parent: production, CredentialId: "wrong",
		Credential: &credentialv1.Credential{Bucket: tr.bucket, Region: tr.m.Region, Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{
			AccessKeyId: tr.key, SecretAccessKey: wrong}}}}, as)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := tr.dests.CreateDestination(ctx, &destinationv1.CreateDestinationRequest{Parent: production, DestinationId: "wrong",
		Destination: &destinationv1.Destination{Credential: cred.GetName(), Prefix: "wrong/", Format: csvFormat()}}, as)
	if err != nil {
		t.Fatal(err)
	}
	tr.failedDelivery(t, bad.GetName(), stream, errorsv1.ErrorReason_ERROR_REASON_INVALID_CREDENTIALS)
	typo := tr.destination(t, "typo", &destinationv1.Destination{Format: csvFormat(), BucketOverride: tr.bucket + "-typo"})
	failed := tr.failedDelivery(t, typo.GetName(), stream, errorsv1.ErrorReason_ERROR_REASON_BUCKET_NOT_FOUND)
	if _, err := tr.dests.UpdateDestination(ctx, &destinationv1.UpdateDestinationRequest{
		Destination: &destinationv1.Destination{Name: typo.GetName(), BucketOverride: tr.bucket},
		UpdateMask:  &fieldmaskpb.FieldMask{Paths: []string{"bucket_override"}},
	}, as); err != nil {
		t.Fatal(err)
	}
	if _, err := tr.resolve(ctx, tr.workflow(t, failed.GetWorkflow()), "fix-bucket-name"); err != nil {
		t.Fatal(err)
	}
	// The session the deliveries used: the cache hands out the same one.
	minted, err := credentialv1.NewCredentialAccessServiceClient(tr.r.conns["credential"]).MintAccess(
		tr.r.asServiceFor(t, "acme", auth.PolicyAdministrator), &credentialv1.MintAccessRequest{Name: tr.cred})
	if err != nil {
		t.Fatal(err)
	}
	secrets := map[string]string{
		"the credential's secret key": tr.secret, "a wrong secret key": wrong, "the caller's token": token,
		"the minted secret key": minted.GetSecretAccessKey(), "the minted session token": minted.GetSessionToken(),
		"MinIO's root password": tr.m.RootPassword,
	}
	_, metricsText := scrape(t, tr.r.metrics)
	exported := map[string]string{"spans": testenv.SpanText(tr.spans.Ended()), "/metrics": metricsText, "logs": tr.logs.String()}
	for what, text := range exported {
		for name, secret := range secrets {
			if secret == "" {
				t.Fatalf("%s is empty: the test proves nothing", name)
			}
			if strings.Contains(text, secret) {
				t.Errorf("%s carry %s", what, name)
			}
		}
	}
	if len(tr.spans.Ended()) < 50 || len(tr.logs.String()) < 1000 {
		t.Fatalf("too little was exported to search: %d spans, %d bytes of logs", len(tr.spans.Ended()), len(tr.logs.String()))
	}

	// The Deliver request's closing line: trace, subject and delivery.
	found := false
	for _, line := range strings.Split(tr.logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["method"] != "/sluice.delivery.v1.DeliveryService/Deliver" || rec["delivery"] != landed.GetName() {
			continue
		}
		found = true
		if rec["subject"] != "operator@acme.test" || rec["tenant"] != "acme" || rec["trace_id"] == nil || rec["span_id"] == nil ||
			!strings.Contains(landed.GetTraceParent(), fmt.Sprint(rec["trace_id"])) {
			t.Errorf("the Deliver request's log line: %v", rec)
		}
	}
	if os.Getenv("SLUICE_SHOW_LOGS") != "" {
		t.Log(tr.logs.String())
	}
	if !found {
		t.Errorf("no Deliver log line names the delivery %s:\n%s", landed.GetName(), tr.logs.String())
	}
}

// The alert rules and the Grafana dashboard in deploy/observability are
// sound: Prometheus's own rule library (checkrules, built by make tools)
// passes the rules, and every dashboard query checked as a recording
// rule, and every metric either names is one a running Sluice exports
// after a delivery.
func TestDashboardAndAlertRules(t *testing.T) {
	checkrules := filepath.Join(localserver.ToolsDir(), "checkrules")
	if _, err := os.Stat(checkrules); err != nil {
		t.Fatalf("checkrules is missing (%v): run `make tools`, which builds it into %s", err, localserver.ToolsDir())
	}
	w := startWorkflows(t, func(c *serveConfig) { c.MetricsAddr = "127.0.0.1:0" })
	recs := customerBatches(t, 1000, 500)
	dest := w.destination(t, "scraped", &destinationv1.Destination{Format: csvFormat()})
	if _, err := deliverclient.DeliverStream(context.Background(), w.delivs, &deliveryv1.DeliveryStart{Destination: dest.GetName()},
		bytes.NewReader(ipcBytes(t, recs[0].Schema(), recs...)), deliverclient.Options{CallOptions: []grpc.CallOption{w.admin}}); err != nil {
		t.Fatal(err)
	}
	fams, _ := scrape(t, w.r.metrics)
	metricName := regexp.MustCompile(`\bsluice_[a-z0-9_]+\b`)
	// Label names are not metrics: matchers, and by/on/without lists, go.
	labelsOnly := regexp.MustCompile(`\{[^}]*\}|\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	checkNames := func(where, expr string) {
		t.Helper()
		names := metricName.FindAllString(labelsOnly.ReplaceAllString(expr, ""), -1)
		if len(names) == 0 {
			t.Errorf("%s names no Sluice metric: %s", where, expr)
		}
		for _, name := range names {
			found := false
			for _, suffix := range []string{"", "_bucket", "_sum", "_count"} {
				found = found || strings.HasSuffix(name, suffix) && fams[strings.TrimSuffix(name, suffix)] != nil
			}
			if !found {
				t.Errorf("%s names %s, which Sluice does not export", where, name)
			}
		}
	}
	check := func(file string) {
		t.Helper()
		if out, err := exec.Command(checkrules, file).CombinedOutput(); err != nil {
			t.Errorf("checkrules %s: %v\n%s", file, err, out)
		}
	}

	rulesFile := "../../deploy/observability/alerts.yaml"
	check(rulesFile)
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert, Expr string
				Labels      map[string]string
				Annotations map[string]string
			}
		}
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	alerts := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			alerts++
			if r.Annotations["summary"] == "" || r.Labels["severity"] == "" {
				t.Errorf("alert %s has no summary or severity", r.Alert)
			}
			checkNames("alert "+r.Alert, r.Expr)
		}
	}
	if alerts < 4 {
		t.Errorf("%d alert rules, want those for failing deliveries, part retries, the sweeper and pool pressure", alerts)
	}

	raw, err = os.ReadFile("../../deploy/observability/grafana-dashboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("grafana-dashboard.json: %v", err)
	}
	// Each query as a recording rule, so that the rule library parses it.
	var b strings.Builder
	b.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	queries := 0
	for _, p := range dash.Panels {
		for _, q := range p.Targets {
			queries++
			expr := strings.ReplaceAll(q.Expr, "$__rate_interval", "5m") // as Grafana substitutes it
			checkNames("panel "+p.Title, expr)
			quoted, _ := json.Marshal(expr)
			fmt.Fprintf(&b, "      - record: sluice:dashboard:query%d\n        expr: %s\n", queries, quoted)
		}
	}
	if dash.Title == "" || queries < 8 {
		t.Errorf("dashboard %q has %d queries", dash.Title, queries)
	}
	queriesFile := filepath.Join(t.TempDir(), "dashboard-queries.yaml")
	if err := os.WriteFile(queriesFile, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	check(queriesFile)
}

// With OTEL_EXPORTER_OTLP_ENDPOINT set, spans and metrics go over the
// wire to an OTLP/gRPC receiver: a delivery's run and part spans, and its
// counters, under the resource the OTEL_* variables name.
func TestOTLPExport(t *testing.T) {
	recv := testenv.NewOTLP(t)
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", recv.Endpoint)
	t.Setenv("OTEL_METRIC_EXPORT_INTERVAL", "200")
	t.Setenv("OTEL_BSP_SCHEDULE_DELAY", "100")
	t.Setenv("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment.name=test")
	w := startWorkflows(t, nil)
	recs := customerBatches(t, 2000, 500)
	dest := w.destination(t, "exported", &destinationv1.Destination{Format: csvFormat()})
	d, err := deliverclient.DeliverStream(context.Background(), w.delivs, &deliveryv1.DeliveryStart{Destination: dest.GetName()},
		bytes.NewReader(ipcBytes(t, recs[0].Schema(), recs...)), deliverclient.Options{CallOptions: []grpc.CallOption{w.admin}})
	if err != nil {
		t.Fatal(err)
	}
	var gotRun, gotPut, gotCounter, gotResource bool
	for i := 0; i < 300 && !(gotRun && gotPut && gotCounter && gotResource); i++ {
		time.Sleep(100 * time.Millisecond)
		for _, rs := range recv.Spans() {
			attrs := map[string]string{}
			for _, kv := range rs.GetResource().GetAttributes() {
				attrs[kv.GetKey()] = kv.GetValue().GetStringValue()
			}
			gotResource = gotResource || attrs["service.name"] == "sluice" && attrs["deployment.environment.name"] == "test" && attrs["service.version"] != ""
			for _, ss := range rs.GetScopeSpans() {
				for _, s := range ss.GetSpans() {
					inTrace := strings.Contains(d.GetTraceParent(), fmt.Sprintf("%x", s.GetTraceId()))
					gotRun = gotRun || s.GetName() == "delivery run" && inTrace
					gotPut = gotPut || s.GetName() == "put object" && inTrace
				}
			}
		}
		for _, rm := range recv.Metrics() {
			for _, sm := range rm.GetScopeMetrics() {
				for _, m := range sm.GetMetrics() {
					if m.GetName() != "sluice.delivery.completed" {
						continue
					}
					for _, p := range m.GetSum().GetDataPoints() {
						gotCounter = gotCounter || p.GetAsInt() >= 1
					}
				}
			}
		}
	}
	if !gotRun || !gotPut || !gotCounter || !gotResource {
		t.Fatalf("over OTLP: run span %v, put span %v, completed counter %v, resource %v", gotRun, gotPut, gotCounter, gotResource)
	}
}
