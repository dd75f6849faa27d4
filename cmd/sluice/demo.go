package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/compress"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/spf13/cobra"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/launch"
	"github.com/sluicehq/sluice/pkg/localserver"
	"github.com/sluicehq/sluice/pkg/sampledata"
	"github.com/sluicehq/sluice/pkg/tracechart"
)

func demoCommand() *cobra.Command {
	cfg := defaultServeConfig()
	cfg.DataDir = "" // a fresh temporary directory per run
	cfg.CredentialAddr, cfg.DestinationAddr, cfg.DeliveryAddr, cfg.ConsoleAddr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run Sluice end to end on the embedded defaults against a local MinIO",
		Long: `Starts MinIO (built by 'make tools') and the three services on random
127.0.0.1 ports, checks them over gRPC, and shows what works today.
With --keep it keeps running until Ctrl-C.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			return demo(ctx, cmd.OutOrStdout(), cfg, o)
		},
	}
	cfg.addFlags(cmd)
	cmd.Flags().BoolVar(&o.keep, "keep", false, "keep MinIO and the services running until Ctrl-C")
	cmd.Flags().Int64Var(&o.rows, "rows", 1_000_000, "customer rows the demo delivers")
	cmd.Flags().StringVar(&o.tracePNG, "trace-png", "", "draw the trace of the demo's delivery across the three services into this PNG file")
	return cmd
}

// demoOptions adjust the demo.
type demoOptions struct {
	// keep keeps everything running until Ctrl-C.
	keep bool
	// tracePNG is where to draw the delivery's trace, if anywhere.
	tracePNG string
	// rows is how many customer rows the demo delivers (1,000,000 when 0).
	rows int64
}

func (o demoOptions) rowCount() int64 {
	if o.rows <= 0 {
		return 1_000_000
	}
	return o.rows
}

func demo(ctx context.Context, w io.Writer, cfg serveConfig, o demoOptions) error {
	var spans *tracetest.SpanRecorder
	if o.tracePNG != "" {
		// Spans kept in memory, to draw one delivery's trace.
		spans = tracetest.NewSpanRecorder()
		cfg.Telemetry.SpanProcessors = append(cfg.Telemetry.SpanProcessors, spans)
	}
	if cfg.DataDir == "" {
		dir, err := os.MkdirTemp("", "sluice-demo-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		cfg.DataDir = dir
	}
	if cfg.LogOutput == nil {
		// The services' JSON logs go to a file of their own, so that the
		// story below reads without them.
		logs, err := os.CreateTemp("", "sluice-demo-*.log")
		if err != nil {
			return err
		}
		defer logs.Close()
		cfg.LogOutput = logs
		fmt.Fprintf(w, "The services' logs go to %s\n\n", logs.Name())
	}
	st := &stepTimer{w: w}
	defer st.end()
	st.begin("== 1. MinIO, the S3 server deliveries will land in")
	minio, err := localserver.StartMinIO()
	if err != nil {
		return err
	}
	defer minio.Stop()
	bucket, err := s3RoundTrip(ctx, w, minio)
	if err != nil {
		return err
	}

	// The services reach this MinIO as customers' S3.
	cfg.useMinIO(minio)

	st.begin("== 2. sluice serve: three services, each on its own port, wired over gRPC")
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ready := make(chan []launch.Endpoint, 1)
	served := make(chan error, 1)
	var env serving
	go func() {
		served <- serve(ctx, cfg, func(sv serving) { env = sv; ready <- sv.eps })
	}()
	var eps []launch.Endpoint
	select {
	case eps = <-ready:
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	}
	printEndpoints(w, cfg.DataDir, env)
	addrs := map[string]string{}
	for _, ep := range eps {
		addrs[ep.Name] = ep.Listener.Addr().String()
	}

	st.begin("== 3. Health over the standard gRPC health protocol")
	hctx, hcancel := context.WithTimeout(ctx, 10*time.Second)
	err = checkHealth(hctx, w, addrs, plaintext)
	hcancel()
	if err != nil {
		return err
	}

	st.begin("== 4. Caller identity and validation on the credential service")
	token, err := identityTour(ctx, w, cfg.DataDir, addrs["credential"])
	if err != nil {
		return err
	}

	st.begin("== 5. A credential for the MinIO bucket, tested against it")
	if err := credentialTour(ctx, w, token, addrs["credential"], minio, bucket); err != nil {
		return err
	}

	st.begin("== 6. A destination on that credential: preview its keys, test its connection")
	if err := destinationTour(ctx, w, token, addrs["destination"], cfg.DataDir); err != nil {
		return err
	}

	st.begin(fmt.Sprintf("== 7. Deliver %d customer rows from a Parquet file with the sluice CLI, streamed as Arrow, and list what landed", o.rowCount()))
	d, err := deliveryTour(ctx, w, token, addrs["delivery"], minio, bucket, cfg.DataDir, o.rowCount())
	if err != nil {
		return err
	}
	if spans != nil {
		if err := drawTrace(ctx, w, spans, d, o.tracePNG); err != nil {
			return err
		}
	}

	st.begin("== 8. A delivery to a misspelled bucket fails: its notification, workflow and resolutions; fix the bucket, resolve")
	if err := workflowTour(ctx, w, token, addrs["destination"], addrs["delivery"], bucket, cfg.DataDir); err != nil {
		return err
	}

	st.end()
	if o.keep {
		fmt.Fprintf(w, "\nRunning until Ctrl-C. MinIO: %s (user %s, password %s)\n", minio.Endpoint, minio.RootUser, minio.RootPassword)
		<-ctx.Done()
	}
	cancel()
	if err := <-served; err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	fmt.Fprintln(w, "\nDemo finished: services stopped gracefully, MinIO stopped.")
	return nil
}

// s3RoundTrip creates a bucket, writes an object and reads it back, to show
// MinIO is live, and answers the bucket.
func s3RoundTrip(ctx context.Context, w io.Writer, minio *localserver.MinIO) (string, error) {
	bucket, err := minio.CreateBucket(ctx, "sluice-demo-")
	if err != nil {
		return "", err
	}
	client := minio.S3("", "")
	body := "hello from sluice demo"
	if _, err := client.PutObject(ctx, &s3.PutObjectInput{Bucket: &bucket, Key: aws.String("hello.txt"), Body: strings.NewReader(body)}); err != nil {
		return "", fmt.Errorf("put to MinIO: %w", err)
	}
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: &bucket, Key: aws.String("hello.txt")})
	if err != nil {
		return "", fmt.Errorf("get from MinIO: %w", err)
	}
	defer out.Body.Close()
	got, err := io.ReadAll(out.Body)
	if err != nil {
		return "", err
	}
	if string(got) != body {
		return "", fmt.Errorf("MinIO returned %q, want %q", got, body)
	}
	fmt.Fprintf(w, "  MinIO at %s: wrote and read back s3://%s/hello.txt\n", minio.Endpoint, bucket)
	return bucket, nil
}

// identityTour makes three calls that show authentication and validation,
// and answers the administrator token it minted.
func identityTour(ctx context.Context, w io.Writer, dataDir, addr string) (string, error) {
	key, err := auth.LoadOrCreateSigningKey(launch.DevUserKeyPath(dataDir))
	if err != nil {
		return "", err
	}
	token, err := auth.NewSigner(key).Mint("demo@acme.test", "acme", []string{auth.PolicyAdministrator}, 10*time.Minute)
	if err != nil {
		return "", err
	}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", err
	}
	defer cc.Close()
	client := credentialv1.NewCredentialServiceClient(cc)
	withToken := grpc.PerRPCCredentials(auth.BearerCredentials(token))

	_, err = client.ListCredentials(ctx, &credentialv1.ListCredentialsRequest{Parent: "tenants/acme/environments/production"})
	fmt.Fprintf(w, "  without a token:        %s\n", describe(err))
	_, err = client.ListCredentials(ctx, &credentialv1.ListCredentialsRequest{Parent: "acme", PageSize: -1}, withToken)
	fmt.Fprintf(w, "  malformed request:      %s\n", describe(err))
	_, err = client.ListCredentials(ctx, &credentialv1.ListCredentialsRequest{Parent: "tenants/globex/environments/production"}, withToken)
	fmt.Fprintf(w, "  another tenant's data:  %s\n", describe(err))
	return token, nil
}

// credentialTour stores MinIO's keys as an access-key credential with the
// CLI (the secret never comes back), and tests it, then a misspelled bucket.
func credentialTour(ctx context.Context, w io.Writer, token, addr string, minio *localserver.MinIO, bucket string) error {
	// The secret key comes from a variable, never a flag a shell history keeps.
	if err := os.Setenv("SLUICE_DEMO_SECRET", minio.RootPassword); err != nil {
		return err
	}
	defer os.Unsetenv("SLUICE_DEMO_SECRET")
	for _, tc := range []struct{ id, bucket string }{{"minio-exports", bucket}, {"misspelled", bucket + "-typo"}} {
		if err := demoCLI(ctx, w, addr, token, "credential", "create", tc.id, "--bucket", tc.bucket, "--region", minio.Region,
			"--access-key-id", minio.RootUser, "--secret-from-env", "SLUICE_DEMO_SECRET"); err != nil {
			return err
		}
		// The misspelled bucket's test fails, and says why: shown, not fatal.
		if err := demoCLI(ctx, w, addr, token, "credential", "test", tc.id); err != nil && tc.id != "misspelled" {
			return err
		}
	}
	return nil
}

// demoCLI shows and runs one sluice command against the demo's services.
func demoCLI(ctx context.Context, w io.Writer, addr, token string, args ...string) error {
	fmt.Fprintf(w, "  $ sluice %s\n", strings.Join(args, " "))
	service := map[string]string{"credential": "--credential-addr", "destination": "--destination-addr"}[args[0]]
	if service == "" {
		service = "--delivery-addr"
	}
	return runCLI(ctx, w, append(args, service, addr, "--token", token, "--config", "", "--environment", "sandbox")...)
}

// destinationTour creates the demo's destination from a settings file with
// the CLI, previews the keys a delivery would write, and tests it.
func destinationTour(ctx context.Context, w io.Writer, token, addr, dataDir string) error {
	// Settings as a person keeps them: a YAML file of the API's fields.
	settings := filepath.Join(dataDir, "c360-csv.yaml")
	if err := os.WriteFile(settings, []byte(`display_name: Customer 360 as CSV
credential: tenants/acme/environments/sandbox/credentials/minio-exports
prefix: c360/
filename_template: "C360_{{now|local:'America/Los_Angeles'|format:'MM-dd-yyyy'}}_{{file_number}}.csv.gz"
format: {delimited: {}}
compression: {kind: COMPRESSION_KIND_GZIP}
split: {max_rows: 1000000}
success_file: true
tags: {source: sluice-demo}
`), 0o600); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"destination", "create", "c360-csv", "--from-file", settings},
		{"destination", "preview", "c360-csv", "--output-name", "c360", "--files", "2"},
		{"destination", "test", "c360-csv"},
	} {
		if err := demoCLI(ctx, w, addr, token, args...); err != nil {
			return err
		}
	}
	return nil
}

// deliveryTour writes a generated customer table to a Parquet file and
// delivers it with the sluice CLI, which lists the objects that landed;
// checks the first against MinIO's own checksum, and shows the delivery as
// ListDeliveries has it.
func deliveryTour(ctx context.Context, w io.Writer, token, addr string, minio *localserver.MinIO, bucket, dataDir string, rowCount int64) (*deliveryv1.Delivery, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	client := deliveryv1.NewDeliveryServiceClient(cc)
	as := grpc.PerRPCCredentials(auth.BearerCredentials(token))
	// The customer table as a file a person would have, then the CLI.
	file := filepath.Join(dataDir, "customer_360.parquet")
	if err := writeCustomers(file, rowCount); err != nil {
		return nil, err
	}
	fi, err := os.Stat(file)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "  wrote %d generated customer rows to %s (%.1f MB of Parquet)\n", rowCount, file, float64(fi.Size())/1e6)
	args := []string{"deliver", file, "--destination", "c360-csv", "--environment", "sandbox", "--output-name", "c360", "--idempotency-key", "demo-c360"}
	fmt.Fprintf(w, "  $ sluice %s\n", strings.Join(args, " "))
	if err := runCLI(ctx, w, append(args, "--delivery-addr", addr, "--token", token, "--config", "")...); err != nil {
		return nil, fmt.Errorf("sluice deliver: %w", err)
	}
	list, err := client.ListDeliveries(ctx, &deliveryv1.ListDeliveriesRequest{Parent: "tenants/acme/environments/sandbox", Filter: "state = SUCCEEDED"}, as)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	if len(list.GetDeliveries()) != 1 {
		return nil, fmt.Errorf("%d deliveries succeeded, want the one just run", len(list.GetDeliveries()))
	}
	d := list.GetDeliveries()[0]
	head, err := minio.S3("", "").HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(bucket), Key: aws.String(d.GetObjects()[0].GetKey()), ChecksumMode: s3types.ChecksumModeEnabled})
	if err != nil {
		return nil, fmt.Errorf("head the first object: %w", err)
	}
	fmt.Fprintf(w, "  MinIO's own CRC32C of the first object: %s (the answer says %s)\n", aws.ToString(head.ChecksumCRC32C), d.GetObjects()[0].GetCrc32C())
	// Read it back as its reader would: gunzip, and the first lines.
	obj, err := minio.S3("", "").GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(d.GetObjects()[0].GetKey())})
	if err != nil {
		return nil, fmt.Errorf("read the first object back: %w", err)
	}
	defer obj.Body.Close()
	zr, err := gzip.NewReader(obj.Body)
	if err != nil {
		return nil, fmt.Errorf("the first object is not gzip: %w", err)
	}
	lines := bufio.NewScanner(zr)
	lines.Buffer(make([]byte, 64<<10), 1<<20)
	fmt.Fprintf(w, "  read back s3://%s/%s, gunzipped; its first lines:\n", bucket, d.GetObjects()[0].GetKey())
	for i := 0; i < 3 && lines.Scan(); i++ {
		line := lines.Text()
		if len(line) > 150 {
			line = line[:150] + "..."
		}
		fmt.Fprintf(w, "    %s\n", line)
	}
	fmt.Fprintf(w, "  ListDeliveries (state = SUCCEEDED): %d delivery\n", len(list.GetDeliveries()))
	return d, nil
}

// runCLI runs a sluice command in this process, printing to w, as the
// binary would.
func runCLI(ctx context.Context, w io.Writer, args ...string) error {
	cmd := rootCommand()
	cmd.SetArgs(args)
	cmd.SetOut(w)
	cmd.SetErr(w)
	if err := cmd.ExecuteContext(ctx); err != nil {
		printError(w, err)
		return err
	}
	return nil
}

// writeCustomers writes rows of the generated customer 360 table to a
// Parquet file.
func writeCustomers(path string, rows int64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	rr := sampledata.NewCustomer360(nil, rows, 0, 1)
	defer rr.Release()
	pw, err := pqarrow.NewFileWriter(rr.Schema(), f, parquet.NewWriterProperties(parquet.WithCompression(compress.Codecs.Snappy), parquet.WithMaxRowGroupLength(128<<10)), pqarrow.DefaultWriterProps())
	if err != nil {
		return err
	}
	for rr.Next() {
		if err := pw.WriteBuffered(rr.RecordBatch()); err != nil {
			return err
		}
	}
	return pw.Close()
}

// drawTrace draws the trace of delivery d, from the spans kept in memory,
// into file.
func drawTrace(ctx context.Context, w io.Writer, spans *tracetest.SpanRecorder, d *deliveryv1.Delivery, file string) error {
	// The request's own span ends as its answer goes out: wait for it.
	for wait := 0; ; wait++ {
		for _, s := range spans.Ended() {
			if s.Parent().IsValid() || !strings.Contains(d.GetTraceParent(), s.SpanContext().TraceID().String()) {
				continue
			}
			rows := tracechart.Rows(s, spans.Ended())
			var buf bytes.Buffer
			title := fmt.Sprintf("One delivery, one trace (%s): %d rows of CSV + gzip, %d spans across the three services", s.SpanContext().TraceID(), d.GetProgress().GetRows(), len(rows))
			if err := tracechart.PNG(&buf, title, rows, 1400); err != nil {
				return err
			}
			if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
				return fmt.Errorf("write the trace's picture: %w", err)
			}
			fmt.Fprintf(w, "  drew its trace, %d spans from the Deliver request down to each part, into %s\n", len(rows), file)
			return nil
		}
		if wait == 50 || ctx.Err() != nil {
			return fmt.Errorf("the delivery's trace %s was not recorded", d.GetTraceParent())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func describe(err error) string {
	e := apierror.FromStatus(err)
	s := e.Code.String() + ": " + e.Message
	for _, v := range e.Violations {
		s += fmt.Sprintf("\n                          - %s: %s", v.Field, v.Description)
	}
	return s
}

// workflowTour delivers to a destination whose bucket is misspelled, shows
// the notification and the workflow with its resolutions, corrects the
// bucket and resolves: the delivery runs again from the data Sluice kept.
// Every step is a sluice command.
func workflowTour(ctx context.Context, w io.Writer, token, destAddr, delivAddr, bucket, dataDir string) error {
	typo := bucket + "-typo"
	if err := demoCLI(ctx, w, destAddr, token, "destination", "create", "c360-typo", "--credential", "minio-exports", "--format", "ndjson",
		"--bucket-override", typo, "--prefix", "c360-fixed/", "--success-file", "-o", "yaml"); err != nil {
		return err
	}
	file := filepath.Join(dataDir, "c360-small.parquet")
	if err := writeCustomers(file, 20_000); err != nil {
		return err
	}
	err := demoCLI(ctx, w, delivAddr, token, "deliver", file, "--destination", "c360-typo", "--output-name", "c360", "--progress", "none")
	if exitCode(err) != exitDeliveryFailed {
		return fmt.Errorf("the delivery to a misspelled bucket: %v, want it to fail", err)
	}
	fmt.Fprintf(w, "  (exit code %d: the delivery failed; Sluice kept its data)\n", exitCode(err))
	// The failed delivery's id, for the commands that follow.
	cc, err := grpc.NewClient(delivAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	list, err := deliveryv1.NewDeliveryServiceClient(cc).ListDeliveries(ctx, &deliveryv1.ListDeliveriesRequest{
		Parent: "tenants/acme/environments/sandbox", Filter: "state = FAILED"}, grpc.PerRPCCredentials(auth.BearerCredentials(token)))
	if err != nil || len(list.GetDeliveries()) != 1 {
		return fmt.Errorf("the failed delivery: %v", err)
	}
	id := last(list.GetDeliveries()[0].GetName())
	for _, args := range [][]string{
		{"notification", "list"},
		{"workflow", "show", id},
	} {
		if err := demoCLI(ctx, w, delivAddr, token, args...); err != nil {
			return err
		}
	}
	fmt.Fprintln(w, "  Following the fix-bucket-name resolution: correct the bucket, then resolve.")
	if err := demoCLI(ctx, w, destAddr, token, "destination", "update", "c360-typo", "--bucket-override", bucket, "-o", "yaml"); err != nil {
		return err
	}
	for _, args := range [][]string{
		{"workflow", "resolve", id, "fix-bucket-name"},
		{"workflow", "show", id},
	} {
		if err := demoCLI(ctx, w, delivAddr, token, args...); err != nil {
			return err
		}
	}
	return nil
}

// stepTimer prints each step's header and, when the next begins, how long
// the last one took.
type stepTimer struct {
	w     io.Writer
	title string
	start time.Time
}

func (s *stepTimer) begin(title string) {
	s.end()
	if s.start.IsZero() {
		fmt.Fprintln(s.w, title)
	} else {
		fmt.Fprintln(s.w, "\n"+title)
	}
	s.title, s.start = title, time.Now()
}

// end prints the running step's time, once.
func (s *stepTimer) end() {
	if s.title == "" {
		return
	}
	fmt.Fprintf(s.w, "  (step took %s)\n", time.Since(s.start).Round(10*time.Millisecond))
	s.title = ""
}
