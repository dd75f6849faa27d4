package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/google/pprof/profile"
	"google.golang.org/grpc"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	"github.com/sluicehq/sluice/pkg/deliverclient"
	"github.com/sluicehq/sluice/pkg/sampledata"
)

// stage is where a CPU sample's time goes: the first rule that matches a
// frame of its stack, from the leaf up, names it. Rules name our packages
// and the libraries that do a stage's work on their own goroutines;
// frames of other libraries (arrow-go, compressors, the runtime's memmove)
// count for the caller that called them.
type stage struct {
	name  string
	match []string
}

// serverStages are the delivery service's stages, in the order a
// delivery's bytes pass them.
var serverStages = []stage{
	{"gRPC receive (HTTP/2 frames, protobuf)", []string{"google.golang.org/grpc", "golang.org/x/net/http2", "google.golang.org/protobuf"}},
	{"ingest checks and IPC decode", []string{"sluice/pkg/arrowingest"}},
	{"staging writes", []string{"sluice/pkg/staging"}},
	{"encoder (format, compression)", []string{"sluice/pkg/arrowfmt", "sluice/pkg/compression", "sluice/pkg/fileset", "sluice/pkg/pgpstream", "sluice/pkg/partition", "klauspost/", "compress/", "golang/snappy"}},
	{"part uploads (copy into parts, CRC32C, HTTP)", []string{"sluice/pkg/multipart", "aws-sdk-go-v2", "aws/smithy-go", "net/http."}},
	{"store writes", []string{"sluice/pkg/sqlstore", "modernc.org/sqlite", "jackc/pgx", "services/delivery/store", "sluice/pkg/lease"}},
	{"delivery service, the rest of it", []string{"sluice/services/", "sluice/pkg/"}},
}

// clientStages are the client's (this process's).
var clientStages = []stage{
	{"client: gRPC send", []string{"google.golang.org/grpc", "golang.org/x/net/http2", "google.golang.org/protobuf"}},
	{"client: IPC encode", []string{"sluice/pkg/deliverclient", "arrow/ipc"}},
}

const gcStage = "garbage collector"

// profileDir, when set, keeps the profiles, for go tool pprof.
var profileDir string

// classify answers the stage of one sample's stack.
func classify(s *profile.Sample, stages []stage) string {
	var frames []string
	for _, loc := range s.Location {
		for _, l := range loc.Line { // inlined frames first, as pprof lists them
			if l.Function != nil {
				frames = append(frames, l.Function.Name)
			}
		}
	}
	for _, f := range frames {
		if strings.HasPrefix(f, "runtime.gcBgMarkWorker") || strings.HasPrefix(f, "runtime.bgsweep") || strings.HasPrefix(f, "runtime.bgscavenge") {
			return gcStage
		}
	}
	for _, f := range frames {
		if strings.HasPrefix(f, "runtime.gcAssistAlloc") || strings.HasPrefix(f, "runtime.gcDrain") {
			return gcStage
		}
		for _, st := range stages {
			for _, m := range st.match {
				if strings.Contains(f, m) {
					return st.name
				}
			}
		}
	}
	return "other (runtime, syscalls, idle work)"
}

// cpuByStage sums a CPU profile's samples by stage.
func cpuByStage(p *profile.Profile, stages []stage) map[string]time.Duration {
	k := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" {
			k = i
		}
	}
	out := map[string]time.Duration{}
	if k < 0 {
		return out
	}
	for _, s := range p.Sample {
		out[classify(s, stages)] += time.Duration(s.Value[k])
	}
	return out
}

// treeCPU answers the CPU time of a process and of its children that are
// still running (a PostgreSQL postmaster's backends), from /proc.
func treeCPU(pid int) (time.Duration, error) {
	total, err := cpuTime(pid)
	if err != nil {
		return 0, err
	}
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, st := range stats {
		b, err := os.ReadFile(st)
		if err != nil {
			continue // ended since the listing
		}
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
		if len(f) < 2 || f[1] != strconv.Itoa(pid) {
			continue
		}
		child, err := strconv.Atoi(filepath.Base(filepath.Dir(st)))
		if err != nil {
			continue
		}
		if d, err := cpuTime(child); err == nil {
			total += d
		}
	}
	return total, nil
}

// cpuTime answers a process's user and system CPU time from /proc.
func cpuTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+2:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: %v %v", pid, err1, err2)
	}
	const ticks = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticks, nil
}

// stageProfiles delivers the table once per format while the delivery
// service's CPU profile (its /debug/pprof/profile) and this process's
// run, and prints where the CPU time of each delivery went, by stage,
// beside the MinIO server's CPU time in the same window.
func (b *bench) stageProfiles() error {
	fmt.Printf("\nWhere the time goes: one delivery of %d rows per output, CPU profiles of the delivery service and of this client taken during it (2 cores: wall time x 2 is all the CPU there is)\n", b.rows)
	for _, id := range []string{"parquet-snappy", "csv-gzip", "ndjson"} {
		// A first run, to size the profile's window.
		wall, err := b.deliverOnce(id, "profile-warm")
		if err != nil {
			return err
		}
		seconds := int(math.Ceil(wall.Seconds()*1.5)) + 1
		server := make(chan []byte, 1)
		serverErr := make(chan error, 1)
		go func() {
			resp, err := http.Get(fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", b.metricsAddr, seconds))
			if err != nil {
				serverErr <- err
				return
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err == nil && resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("the delivery service's profile: %s: %s", resp.Status, body)
			}
			if err != nil {
				serverErr <- err
				return
			}
			server <- body
		}()
		var client bytes.Buffer
		if err := pprof.StartCPUProfile(&client); err != nil {
			return err
		}
		time.Sleep(300 * time.Millisecond) // the service's profile has started
		minioBefore, err := cpuTime(b.minio.Pid())
		if err != nil {
			pprof.StopCPUProfile()
			return err
		}
		wall, err = b.deliverOnce(id, "profile")
		minioAfter, _ := cpuTime(b.minio.Pid())
		pprof.StopCPUProfile()
		if err != nil {
			return err
		}
		var serverProf []byte
		select {
		case serverProf = <-server:
		case err := <-serverErr:
			return err
		}
		sp, err := profile.Parse(bytes.NewReader(serverProf))
		if err != nil {
			return fmt.Errorf("parse the delivery service's profile: %w", err)
		}
		cp, err := profile.Parse(bytes.NewReader(client.Bytes()))
		if err != nil {
			return fmt.Errorf("parse the client's profile: %w", err)
		}
		if profileDir != "" {
			for name, p := range map[string][]byte{"delivery": serverProf, "client": client.Bytes()} {
				if err := os.WriteFile(filepath.Join(profileDir, id+"-"+name+".pprof"), p, 0o644); err != nil {
					return err
				}
			}
		}
		printStages(id, wall, cpuByStage(sp, serverStages), cpuByStage(cp, clientStages), minioAfter-minioBefore)
	}
	return nil
}

// deliverOnce delivers the table to the format's destination.
func (b *bench) deliverOnce(id, name string) (time.Duration, error) {
	rr, err := array.NewRecordReader(sampledata.Customer360Schema, b.recs)
	if err != nil {
		return 0, err
	}
	start := time.Now()
	_, err = deliverclient.Deliver(b.ctx, deliveryv1.NewDeliveryServiceClient(b.conn),
		&deliveryv1.DeliveryStart{Destination: b.dests[id].GetName(), OutputName: name}, rr,
		deliverclient.Options{CallOptions: []grpc.CallOption{b.token}})
	if err != nil {
		return 0, fmt.Errorf("deliver %s: %w", id, err)
	}
	return time.Since(start), nil
}

func printStages(id string, wall time.Duration, server, client map[string]time.Duration, minio time.Duration) {
	fmt.Printf("\n%s: %.2f s end to end\n\n| process | stage | CPU s | share of all CPU below |\n|---|---|---|---|\n", id, wall.Seconds())
	var all time.Duration
	for _, m := range []map[string]time.Duration{server, client} {
		for _, d := range m {
			all += d
		}
	}
	all += minio
	row := func(proc, name string, d time.Duration) {
		fmt.Printf("| %s | %s | %.2f | %.0f %% |\n", proc, name, d.Seconds(), 100*d.Seconds()/all.Seconds())
	}
	for _, part := range []struct {
		proc   string
		m      map[string]time.Duration
		stages []stage
	}{{"delivery service", server, serverStages}, {"client", client, clientStages}} {
		var names []string
		for _, st := range part.stages {
			names = append(names, st.name)
		}
		var rest []string
		for n := range part.m {
			if !slices.Contains(names, n) {
				rest = append(rest, n)
			}
		}
		sort.Strings(rest)
		var total time.Duration
		for _, n := range append(names, rest...) {
			if d, ok := part.m[n]; ok {
				row(part.proc, n, d)
				total += d
			}
		}
		fmt.Printf("| %s | **all** | **%.2f** | **%.0f %%** |\n", part.proc, total.Seconds(), 100*total.Seconds()/all.Seconds())
	}
	row("MinIO", "S3 server (from /proc)", minio)
}
