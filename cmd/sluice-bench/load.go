package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	credentialv1 "github.com/sluicehq/sluice/gen/sluice/credential/v1"
	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/deliverclient"
	"github.com/sluicehq/sluice/pkg/launch"
	"github.com/sluicehq/sluice/pkg/localserver"
)

// loadOptions shape the load test.
type loadOptions struct {
	stores      []string // sqlite, postgres
	heavy       int      // the heavy tenant's concurrent deliveries
	deliveryMB  int      // Arrow input of each of them, and of the light tenants' one
	small       int      // small deliveries, 16 at a time
	smallAlone  int      // small deliveries one at a time
	smallRows   int64
	memLimit    string
	parallelism int
	// deliveryFlags are more flags for the delivery service.
	deliveryFlags []string
}

// tenantEnv is one tenant's token and destination on the load test's
// services.
type tenantEnv struct {
	name   string
	token  grpc.CallOption
	dest   string
	small  string
	bucket string
}

// loadRun is the services of one load test run.
type loadRun struct {
	ctx     context.Context
	m       *localserver.MinIO
	sl      *localserver.Sluice
	conn    *grpc.ClientConn
	metrics string
	store   string
	tenants []*tenantEnv
	// pgPid is the PostgreSQL postmaster's (0 on SQLite); pgDSN the
	// delivery store's database.
	pgPid int
	pgDSN string
	// peerMetrics are the destination and credential services' /metrics.
	peerMetrics map[string]string
}

// processes names the processes whose CPU the small deliveries count, in
// the order printed.
var processes = []string{"delivery service", "destination service", "credential service", "PostgreSQL", "MinIO", "this client"}

// transactions answers the delivery store's transactions so far (read
// only ones too) on PostgreSQL, from pg_stat_database, whose counters
// are flushed within a second of each transaction: read after a pause.
func (r *loadRun) transactions() (int64, error) {
	time.Sleep(1500 * time.Millisecond)
	db, err := sql.Open("pgx", r.pgDSN)
	if err != nil {
		return 0, err
	}
	defer db.Close()
	var n int64
	err = db.QueryRowContext(r.ctx, `SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()`).Scan(&n)
	return n, err
}

// cpuNow answers each process's CPU time so far (PostgreSQL's with its
// backends).
func (r *loadRun) cpuNow() (map[string]time.Duration, error) {
	pids := map[string]int{
		"delivery service": r.sl.Pid("delivery"), "destination service": r.sl.Pid("destination"), "credential service": r.sl.Pid("credential"),
		"PostgreSQL": r.pgPid, "MinIO": r.m.Pid(), "this client": os.Getpid(),
	}
	out := map[string]time.Duration{}
	for name, pid := range pids {
		if pid == 0 {
			continue
		}
		cpu := cpuTime
		if name == "PostgreSQL" {
			cpu = treeCPU // with its backends (this client's children are the servers)
		}
		d, err := cpu(pid)
		if err != nil {
			return nil, fmt.Errorf("CPU time of %s: %w", name, err)
		}
		out[name] = d
	}
	return out, nil
}

// load runs, on each store, the fairness test (a heavy tenant sending many
// deliveries at once beside three sending one each) and the small
// deliveries beside the same S3 work done by hand. Loopback only, bounded
// in count.
func (b *bench) load(o loadOptions) error {
	m, err := startMinIO()
	if err != nil {
		return err
	}
	defer m.Stop()
	for _, store := range o.stores {
		if err := b.loadOn(m, store, o); err != nil {
			return fmt.Errorf("load on %s: %w", store, err)
		}
	}
	return nil
}

func (b *bench) loadOn(m *localserver.MinIO, store string, o loadOptions) error {
	ctx := b.ctx
	port, err := freeLocalPort()
	if err != nil {
		return err
	}
	opts := localserver.SluiceOptions{MinIO: m, Delivery: []string{"--metrics-addr", fmt.Sprintf("127.0.0.1:%d", port), "--pprof"}}
	// The peers serve their profiles too, for --profile-dir.
	peerMetrics := map[string]string{}
	for _, peer := range []string{"destination", "credential"} {
		p, err := freeLocalPort()
		if err != nil {
			return err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		peerMetrics[peer] = "http://" + addr + "/metrics"
		flags := []string{"--metrics-addr", addr, "--pprof"}
		if peer == "destination" {
			opts.Destination = flags
		} else {
			opts.Credential = flags
		}
	}
	opts.Delivery = append(opts.Delivery, o.deliveryFlags...)
	if len(o.deliveryFlags) > 0 {
		fmt.Printf("\nThe delivery service runs with %s.\n", strings.Join(o.deliveryFlags, " "))
	}
	if o.memLimit != "" {
		opts.DeliveryEnv = []string{"GOMEMLIMIT=" + o.memLimit}
	}
	pgPid, pgDSN := 0, ""
	switch store {
	case "sqlite":
	case "postgres":
		pg, err := localserver.StartPostgres()
		if err != nil {
			return err
		}
		defer pg.Stop()
		pgPid = pg.Pid()
		dsn, drop, err := pg.CreateDatabase(ctx)
		if err != nil {
			return err
		}
		defer drop()
		opts.Delivery = append(opts.Delivery, "--database", dsn)
		pgDSN = dsn
	default:
		return fmt.Errorf("--load-stores: %q is neither sqlite nor postgres", store)
	}
	sl, err := localserver.StartSluice(opts)
	if err != nil {
		return err
	}
	defer sl.Stop()
	r := &loadRun{ctx: ctx, m: m, sl: sl, metrics: fmt.Sprintf("http://127.0.0.1:%d/metrics", port), peerMetrics: peerMetrics, store: store, pgPid: pgPid, pgDSN: pgDSN}
	if r.conn, err = grpc.NewClient(sl.Addrs["delivery"], grpc.WithTransportCredentials(insecure.NewCredentials())); err != nil {
		return err
	}
	defer r.conn.Close()
	for _, t := range []string{"heavy", "light-1", "light-2", "light-3"} {
		te, err := r.tenant(t)
		if err != nil {
			return err
		}
		r.tenants = append(r.tenants, te)
	}
	fmt.Printf("\nLoad on %s (delivery store), the services as processes on MinIO, 2 cores shared with MinIO and this client\n", store)
	if o.heavy == 0 {
		return b.smallDeliveries(r, o) // the small deliveries alone
	}
	if err := b.fairness(r, o); err != nil {
		return err
	}
	return b.smallDeliveries(r, o)
}

func freeLocalPort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// tenant makes a tenant's token, bucket, credential, a Parquet destination
// and an NDJSON destination with a success file (the small deliveries').
func (r *loadRun) tenant(name string) (*tenantEnv, error) {
	key, err := auth.LoadOrCreateSigningKey(launch.DevUserKeyPath(filepath.Join(r.sl.Dir, "data")))
	if err != nil {
		return nil, err
	}
	tok, err := auth.NewSigner(key).Mint("load@"+name+".test", name, []string{auth.PolicyAdministrator}, 6*time.Hour)
	if err != nil {
		return nil, err
	}
	t := &tenantEnv{name: name, token: grpc.PerRPCCredentials(auth.BearerCredentials(tok))}
	if t.bucket, err = r.m.CreateBucket(r.ctx, "load-"); err != nil {
		return nil, err
	}
	parent := "tenants/" + name + "/environments/production"
	cc, err := grpc.NewClient(r.sl.Addrs["credential"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	cred, err := credentialv1.NewCredentialServiceClient(cc).CreateCredential(r.ctx, &credentialv1.CreateCredentialRequest{Parent: parent, CredentialId: "minio",
		Credential: &credentialv1.Credential{Bucket: t.bucket, Region: r.m.Region,
			Type: &credentialv1.Credential_AccessKey{AccessKey: &credentialv1.AccessKey{AccessKeyId: r.m.RootUser, SecretAccessKey: r.m.RootPassword}}}}, t.token)
	if err != nil {
		return nil, err
	}
	dc, err := grpc.NewClient(r.sl.Addrs["destination"], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer dc.Close()
	dests := destinationv1.NewDestinationServiceClient(dc)
	big, err := dests.CreateDestination(r.ctx, &destinationv1.CreateDestinationRequest{Parent: parent, DestinationId: "parquet", Destination: &destinationv1.Destination{
		Credential: cred.GetName(), Prefix: "big/", Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Parquet{Parquet: &destinationv1.ParquetFormat{}}}}}, t.token)
	if err != nil {
		return nil, err
	}
	small, err := dests.CreateDestination(r.ctx, &destinationv1.CreateDestinationRequest{Parent: parent, DestinationId: "small", Destination: &destinationv1.Destination{
		Credential: cred.GetName(), Prefix: "small/", SuccessFile: true,
		Format: &destinationv1.FileFormat{Kind: &destinationv1.FileFormat_Ndjson{Ndjson: &destinationv1.NdjsonFormat{}}}}}, t.token)
	if err != nil {
		return nil, err
	}
	t.dest, t.small = big.GetName(), small.GetName()
	return t, nil
}

// timed is one delivery's time and size.
type timed struct {
	tenant     string
	start, end time.Time
	bytesIn    int64
	refusals   int
}

// deliverRetrying delivers rows of the dataset, sending again when the
// service answers RESOURCE_EXHAUSTED, after the RetryInfo it gives (an
// honest client's manners).
func (b *bench) deliverRetrying(r *loadRun, t *tenantEnv, dest string, rows int64, name string) (timed, error) {
	out := timed{tenant: t.name, start: time.Now()}
	for {
		d, err := deliverclient.Deliver(r.ctx, deliveryv1.NewDeliveryServiceClient(r.conn),
			&deliveryv1.DeliveryStart{Destination: dest, OutputName: name}, &cycle{recs: b.recs, rows: rows},
			deliverclient.Options{CallOptions: []grpc.CallOption{t.token}})
		if e := apierror.FromStatus(err); e != nil && e.Code == codes.ResourceExhausted {
			out.refusals++
			time.Sleep(max(e.RetryAfter, 100*time.Millisecond))
			continue
		}
		if err != nil {
			return out, err
		}
		out.end, out.bytesIn = time.Now(), d.GetProgress().GetBytesIn()
		return out, nil
	}
}

// rowsFor answers how many rows of the dataset make mb MB of Arrow.
func (b *bench) rowsFor(mb int) int64 {
	var in int64
	for _, rec := range b.recs {
		for _, c := range rec.Columns() {
			for _, buf := range c.Data().Buffers() {
				if buf != nil {
					in += int64(buf.Len())
				}
			}
		}
	}
	var rows int64
	for _, rec := range b.recs {
		rows += rec.NumRows()
	}
	return int64(float64(mb) * 1e6 / (float64(in) / float64(rows)))
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p * float64(len(s)-1))
	return s[i]
}

// fairness runs one light delivery alone, then the heavy tenant's
// deliveries with the light tenants' one each started among them, then
// all of them from one tenant, and prints each tenant's figures.
func (b *bench) fairness(r *loadRun, o loadOptions) error {
	rows := b.rowsFor(o.deliveryMB)
	pid := r.sl.Pid("delivery")
	heavy, lights := r.tenants[0], r.tenants[1:]
	// Alone: each light tenant's delivery by itself, and its peak RSS.
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return fmt.Errorf("reset the peak RSS: %w", err)
	}
	alone := map[string]time.Duration{}
	for _, t := range lights {
		d, err := b.deliverRetrying(r, t, t.dest, rows, "alone-"+t.name)
		if err != nil {
			return err
		}
		alone[t.name] = d.end.Sub(d.start)
	}
	aloneRSS, err := peakRSS(pid)
	if err != nil {
		return err
	}
	together := func(from func(i int) *tenantEnv, n int, lightsAfter time.Duration, name string) ([]timed, error) {
		var (
			mu   sync.Mutex
			all  []timed
			errs []error
			wg   sync.WaitGroup
		)
		var seq atomic.Int64
		run := func(t *tenantEnv) {
			defer wg.Done()
			d, err := b.deliverRetrying(r, t, t.dest, rows, fmt.Sprintf("%s-%d", name, seq.Add(1)))
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", t.name, err))
				return
			}
			all = append(all, d)
		}
		for i := range n {
			wg.Add(1)
			go run(from(i))
		}
		if lightsAfter > 0 {
			time.Sleep(lightsAfter)
			for _, t := range lights {
				wg.Add(1)
				go run(t)
			}
		}
		wg.Wait()
		return all, errors.Join(errs...)
	}
	// The light tenants together, without the heavy one: what the heavy
	// tenant's deliveries cost them is the difference.
	pairs, err := together(func(i int) *tenantEnv { return lights[i] }, len(lights), 0, "lights-together")
	if err != nil {
		return err
	}
	lightsTogether := map[string]time.Duration{}
	for _, d := range pairs {
		lightsTogether[d.tenant] = d.end.Sub(d.start)
	}
	waitBefore, err := r.poolWait()
	if err != nil {
		return err
	}
	slotBefore, err := r.slotWait()
	if err != nil {
		return err
	}
	yieldedBefore, err := r.counter("sluice_delivery_running_yielded_total")
	if err != nil {
		return err
	}
	if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
		return err
	}
	heaps := r.heapSnapshots(time.Second, 4)
	mixed, err := together(func(int) *tenantEnv { return heavy }, o.heavy, time.Second, "mixed")
	if err != nil {
		return err
	}
	if err := heaps(); err != nil {
		return err
	}
	mixedRSS, err := peakRSS(pid)
	if err != nil {
		return err
	}
	waitAfter, err := r.poolWait()
	if err != nil {
		return err
	}
	slotAfter, err := r.slotWait()
	if err != nil {
		return err
	}
	yieldedAfter, err := r.counter("sluice_delivery_running_yielded_total")
	if err != nil {
		return err
	}
	// The same deliveries from one tenant, for the aggregate throughput.
	one, err := together(func(int) *tenantEnv { return heavy }, o.heavy+len(lights), 0, "one-tenant")
	if err != nil {
		return err
	}
	fmt.Printf("\nFairness: tenant heavy sends %d deliveries of %d MB of Arrow at once (Parquet snappy); light-1..3 send one each, started 1 s into it\n\n",
		o.heavy, o.deliveryMB)
	fmt.Println("| tenant | deliveries | refused, then sent again | MB in | p50 | p99 | alone | with the heavy tenant / alone | the light tenants together, no heavy one | with the heavy tenant / without |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|")
	for _, t := range r.tenants {
		var ds []time.Duration
		var in int64
		refused := 0
		for _, d := range mixed {
			if d.tenant == t.name {
				ds = append(ds, d.end.Sub(d.start))
				in += d.bytesIn
				refused += d.refusals
			}
		}
		a, ratio, tg, tgRatio := "-", "-", "-", "-"
		if al, ok := alone[t.name]; ok {
			a, ratio = fmt.Sprintf("%.2f s", al.Seconds()), fmt.Sprintf("%.2f x", percentile(ds, 0.5).Seconds()/al.Seconds())
		}
		if lt, ok := lightsTogether[t.name]; ok {
			tg, tgRatio = fmt.Sprintf("%.2f s", lt.Seconds()), fmt.Sprintf("%.2f x", percentile(ds, 0.5).Seconds()/lt.Seconds())
		}
		fmt.Printf("| %s | %d | %d | %.0f | %.2f s | %.2f s | %s | %s | %s | %s |\n", t.name, len(ds), refused, float64(in)/1e6,
			percentile(ds, 0.5).Seconds(), percentile(ds, 0.99).Seconds(), a, ratio, tg, tgRatio)
	}
	span := func(ds []timed) (float64, time.Duration) {
		first, last := ds[0].start, ds[0].end
		var in int64
		for _, d := range ds {
			if d.start.Before(first) {
				first = d.start
			}
			if d.end.After(last) {
				last = d.end
			}
			in += d.bytesIn
		}
		return float64(in) / 1e6 / last.Sub(first).Seconds(), last.Sub(first)
	}
	mixedRate, mixedSpan := span(mixed)
	oneRate, oneSpan := span(one)
	fmt.Printf("\n| aggregate | MB/s of Arrow in | wall time | delivery service peak RSS | part-buffer wait, all uploads together | running-slot wait, all streams together | running slots given up to a waiting tenant |\n|---|---|---|---|---|---|---|\n")
	fmt.Printf("| four tenants | %.1f | %.1f s | %.0f MiB | %.1f s | %.1f s | %.0f |\n", mixedRate, mixedSpan.Seconds(), float64(mixedRSS)/(1<<20), waitAfter-waitBefore, slotAfter-slotBefore, yieldedAfter-yieldedBefore)
	fmt.Printf("| the same deliveries from one tenant | %.1f | %.1f s | | | | |\n", oneRate, oneSpan.Seconds())
	fmt.Printf("| one delivery at a time (the light tenants alone) | | | %.0f MiB | | | |\n", float64(aloneRSS)/(1<<20))
	fmt.Printf("\n(four tenants / one tenant throughput: %.2f x; peak RSS under load / alone: %.2f x)\n", mixedRate/oneRate, float64(mixedRSS)/float64(aloneRSS))
	return nil
}

// poolWait reads the delivery service's part-buffer wait from /metrics.
func (r *loadRun) poolWait() (float64, error) {
	return r.counter("sluice_delivery_part_buffers_wait_seconds_total")
}

// saveProfileOf saves the CPU profile of the service whose /metrics are
// at metrics.
func saveProfileOf(metrics string, seconds int, path string) error {
	resp, err := http.Get(fmt.Sprintf("%s?seconds=%d", strings.Replace(metrics, "/metrics", "/debug/pprof/profile", 1), seconds))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the profile of %s: %s", metrics, resp.Status)
	}
	return os.WriteFile(path, body, 0o644)
}

// heapSnapshots saves, with --profile-dir, n heap profiles of the
// delivery service every, while the load runs; the answer waits for them.
func (r *loadRun) heapSnapshots(every time.Duration, n int) func() error {
	if profileDir == "" {
		return func() error { return nil }
	}
	done := make(chan error, 1)
	go func() {
		var errs []error
		for i := range n {
			time.Sleep(every)
			resp, err := http.Get(strings.Replace(r.metrics, "/metrics", "/debug/pprof/heap", 1))
			if err != nil {
				errs = append(errs, err)
				continue
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				err = os.WriteFile(filepath.Join(profileDir, fmt.Sprintf("load-%s-heap-%d.pprof", r.store, i+1)), body, 0o644)
			}
			errs = append(errs, err)
		}
		done <- errors.Join(errs...)
	}()
	return func() error { return <-done }
}

// slotWait reads the time streams waited for a running slot.
func (r *loadRun) slotWait() (float64, error) {
	return r.counter("sluice_delivery_running_wait_seconds_total")
}

// counter reads one counter of the delivery service's /metrics.
func (r *loadRun) counter(name string) (float64, error) {
	resp, err := http.Get(r.metrics)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	// Summed over the series' labels (a histogram's outcomes).
	var sum float64
	for _, line := range strings.Split(string(body), "\n") {
		if line == name || strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			f := strings.Fields(line)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				return 0, err
			}
			sum += v
		}
	}
	return sum, nil
}

// putTime answers the time the delivery service's S3 uploads took so
// far, and how many there were (sluice.upload.part.duration).
func (r *loadRun) putTime() (time.Duration, float64, error) {
	sum, err := r.counter("sluice_upload_part_duration_seconds_sum")
	if err != nil {
		return 0, 0, err
	}
	n, err := r.counter("sluice_upload_part_duration_seconds_count")
	return time.Duration(sum * float64(time.Second)), n, err
}

// smallDeliveries times small NDJSON deliveries with a success file, one
// at a time and 16 at a time, beside the same S3 work by hand: one
// PutObject of the same bytes and an empty .DONE.
func (b *bench) smallDeliveries(r *loadRun, o loadOptions) error {
	t := r.tenants[1]
	first, err := b.deliverRetrying(r, t, t.small, o.smallRows, "warm")
	if err != nil {
		return err
	}
	_ = first
	// The size of one small file, for the PUTs by hand.
	d, err := deliverclient.Deliver(r.ctx, deliveryv1.NewDeliveryServiceClient(r.conn), &deliveryv1.DeliveryStart{Destination: t.small, OutputName: "size"},
		&cycle{recs: b.recs, rows: o.smallRows}, deliverclient.Options{CallOptions: []grpc.CallOption{t.token}})
	if err != nil {
		return err
	}
	// By hand, the same bytes (MinIO takes longer over random bytes than
	// over a repeated one: 0.4 ms a PUT here).
	s3c := r.m.S3("", "")
	var body []byte
	for _, obj := range d.GetObjects() {
		if obj.GetKind() != "data" {
			continue
		}
		got, err := s3c.GetObject(r.ctx, &s3.GetObjectInput{Bucket: aws.String(t.bucket), Key: aws.String(obj.GetKey())})
		if err != nil {
			return err
		}
		body, err = io.ReadAll(got.Body)
		got.Body.Close()
		if err != nil {
			return err
		}
	}
	if len(body) == 0 {
		return fmt.Errorf("the small delivery %s answered no data object", d.GetName())
	}
	byHand := func(i int) error {
		key := fmt.Sprintf("hand/%d.ndjson", i)
		if _, err := s3c.PutObject(r.ctx, &s3.PutObjectInput{Bucket: aws.String(t.bucket), Key: aws.String(key), Body: bytes.NewReader(body)}); err != nil {
			return err
		}
		_, err := s3c.PutObject(r.ctx, &s3.PutObjectInput{Bucket: aws.String(t.bucket), Key: aws.String(key + ".DONE"), Body: bytes.NewReader(nil)})
		return err
	}
	deliver := func(i int) error {
		_, err := b.deliverRetrying(r, t, t.small, o.smallRows, fmt.Sprintf("s%d", i))
		return err
	}
	sequential := func(n int, f func(int) error) ([]time.Duration, error) {
		var ds []time.Duration
		for i := range n {
			start := time.Now()
			if err := f(i); err != nil {
				return nil, err
			}
			ds = append(ds, time.Since(start))
		}
		return ds, nil
	}
	parallel := func(n, at int, f func(int) error) (float64, error) {
		start := time.Now()
		next := make(chan int)
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			errs []error
		)
		for range at {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					if err := f(i); err != nil {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
				}
			}()
		}
		for i := range n {
			next <- i + 1_000_000
		}
		close(next)
		wg.Wait()
		return float64(n) / time.Since(start).Seconds(), errors.Join(errs...)
	}
	putsBefore, nBefore, err := r.putTime()
	if err != nil {
		return err
	}
	ours, err := sequential(o.smallAlone, deliver)
	if err != nil {
		return err
	}
	putsAfter, nAfter, err := r.putTime()
	if err != nil {
		return err
	}
	hand, err := sequential(o.smallAlone, byHand)
	if err != nil {
		return err
	}
	// Of a delivery's time, what its two PUTs took (the service's own
	// histogram), beside the two by hand: the rest is Sluice's.
	var ourPuts, handPuts time.Duration
	if n := nAfter - nBefore; n > 0 {
		ourPuts = time.Duration(float64(putsAfter-putsBefore) / n * 2)
	}
	for _, d := range hand {
		handPuts += d
	}
	handPuts /= time.Duration(len(hand))
	// With --profile-dir, the delivery service's CPU profile while the
	// small deliveries run 16 at a time.
	profiled := make(chan error, 1)
	if profileDir != "" {
		go func() {
			var wg sync.WaitGroup
			errs := make([]error, 3)
			for i, svc := range []string{"delivery", "destination", "credential"} {
				metrics := r.metrics
				if svc != "delivery" {
					metrics = r.peerMetrics[svc]
				}
				wg.Go(func() {
					errs[i] = saveProfileOf(metrics, 3, filepath.Join(profileDir, fmt.Sprintf("small-%s-%s.pprof", r.store, svc)))
				})
			}
			wg.Wait()
			profiled <- errors.Join(errs...)
		}()
	} else {
		profiled <- nil
	}
	// Each process's CPU per delivery (per set of PUTs by hand), 16 at a
	// time: on 2 cores shared by all of them, throughput is CPU.
	cpuPer := func(n int, f func() (float64, error)) (float64, map[string]time.Duration, error) {
		before, err := r.cpuNow()
		if err != nil {
			return 0, nil, err
		}
		rate, err := f()
		if err != nil {
			return 0, nil, err
		}
		after, err := r.cpuNow()
		if err != nil {
			return 0, nil, err
		}
		per := map[string]time.Duration{}
		for name, d := range after {
			per[name] = (d - before[name]) / time.Duration(n)
		}
		return rate, per, nil
	}
	var txBefore int64
	if r.pgDSN != "" {
		if txBefore, err = r.transactions(); err != nil {
			return err
		}
	}
	oursRate, oursCPU, err := cpuPer(o.small, func() (float64, error) {
		if profileDir == "" {
			return parallel(o.small, o.parallelism, deliver)
		}
		// This client's own profile beside the service's.
		f, err := os.Create(filepath.Join(profileDir, fmt.Sprintf("small-%s-client.pprof", r.store)))
		if err != nil {
			return 0, err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return 0, err
		}
		defer pprof.StopCPUProfile()
		return parallel(o.small, o.parallelism, deliver)
	})
	if perr := <-profiled; err == nil {
		err = perr
	}
	if err != nil {
		return err
	}
	var txPer float64
	if r.pgDSN != "" {
		// Each transaction counts once, however its statements went.
		txAfter, err := r.transactions()
		if err != nil {
			return err
		}
		txPer = float64(txAfter-txBefore-1) / float64(o.small) // -1: this count's own
	}
	handRate, handCPU, err := cpuPer(o.small, func() (float64, error) { return parallel(o.small, o.parallelism, byHand) })
	if err != nil {
		return err
	}
	fmt.Printf("\nSmall deliveries: %d rows (%d bytes of NDJSON) with a .DONE file; by hand: one PutObject of the same bytes (no checksum) and an empty .DONE, same SDK, same MinIO\n\n",
		o.smallRows, len(body))
	fmt.Println("| | Sluice Deliver | by hand (two PUTs) | Sluice / by hand |")
	fmt.Println("|---|---|---|---|")
	fmt.Printf("| one at a time, p50 (%d) | %.1f ms | %.1f ms | %.2f x |\n", o.smallAlone, ms(percentile(ours, 0.5)), ms(percentile(hand, 0.5)), ms(percentile(ours, 0.5))/ms(percentile(hand, 0.5)))
	fmt.Printf("| one at a time, p99 | %.1f ms | %.1f ms | %.2f x |\n", ms(percentile(ours, 0.99)), ms(percentile(hand, 0.99)), ms(percentile(ours, 0.99))/ms(percentile(hand, 0.99)))
	fmt.Printf("| one at a time, mean of the two PUTs (the service's sluice.upload.part.duration) | %.1f ms | %.1f ms | %.2f x |\n", ms(ourPuts), ms(handPuts), ms(ourPuts)/ms(handPuts))
	fmt.Printf("| %d at a time, %d in all | %.0f /s | %.0f /s | %.2f x |\n", o.parallelism, o.small, oursRate, handRate, oursRate/handRate)
	fmt.Printf("\nCPU per small delivery, %d at a time (by hand: per set of two PUTs), from /proc (USER_HZ ticks: about 10 ms each, so averaged over all %d)\n\n", o.parallelism, o.small)
	fmt.Println("| process | Sluice Deliver | by hand |")
	fmt.Println("|---|---|---|")
	var oursAll, handAll time.Duration
	for _, name := range processes {
		d, ok := oursCPU[name]
		if !ok {
			continue
		}
		oursAll += d
		handAll += handCPU[name]
		fmt.Printf("| %s | %.2f ms | %.2f ms |\n", name, ms(d), ms(handCPU[name]))
	}
	fmt.Printf("| **all** | **%.2f ms** | **%.2f ms** |\n", ms(oursAll), ms(handAll))
	if r.pgDSN != "" {
		fmt.Printf("\nThe delivery store's transactions per small delivery (pg_stat_database, read-only ones too): %.1f\n", txPer)
	}
	return nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
