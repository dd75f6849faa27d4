package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/array"
	"github.com/apache/arrow-go/v18/arrow/csv"
	"github.com/apache/arrow-go/v18/arrow/ipc"
	"github.com/apache/arrow-go/v18/arrow/memory"
	"github.com/apache/arrow-go/v18/parquet"
	"github.com/apache/arrow-go/v18/parquet/file"
	"github.com/apache/arrow-go/v18/parquet/pqarrow"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"
	"golang.org/x/term"
	"google.golang.org/grpc"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	"github.com/sluicehq/sluice/pkg/deliverclient"
)

// input is a file to deliver, opened as a stream of record batches (or
// of Arrow IPC bytes, sent as they are).
type input struct {
	kind    string
	records array.RecordReader // nil for an Arrow IPC stream
	stream  io.Reader          // an Arrow IPC stream, sent as it is
	// read counts the file's bytes read so far, of size; rows is the
	// file's rows when the format says (Parquet), else -1.
	read       *atomic.Int64
	size, rows int64
	close      func()
}

// csvTypes parses --csv-type name=type overrides.
func csvTypes(specs []string) (map[string]arrow.DataType, error) {
	types := map[string]arrow.DataType{
		"int64": arrow.PrimitiveTypes.Int64, "float64": arrow.PrimitiveTypes.Float64, "string": arrow.BinaryTypes.String,
		"bool": arrow.FixedWidthTypes.Boolean, "date": arrow.FixedWidthTypes.Date32, "timestamp": &arrow.TimestampType{Unit: arrow.Microsecond, TimeZone: "UTC"},
	}
	out := map[string]arrow.DataType{}
	for _, s := range specs {
		name, typ, ok := strings.Cut(s, "=")
		dt, known := types[typ]
		if !ok || !known {
			return nil, usageError("--csv-type %q: want COLUMN=TYPE, TYPE one of int64, float64, string, bool, date, timestamp", s)
		}
		out[name] = dt
	}
	return out, nil
}

// openInput opens path as kind (auto: by its first bytes and name).
func openInput(path, kind string, types map[string]arrow.DataType) (*input, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usageError("%v", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	in := &input{read: &atomic.Int64{}, size: st.Size(), rows: -1, close: func() { f.Close() }}
	if kind == "auto" {
		head := make([]byte, 8)
		n, _ := io.ReadFull(f, head)
		head = head[:n]
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			f.Close()
			return nil, err
		}
		switch {
		case bytes.HasPrefix(head, []byte("PAR1")):
			kind = "parquet"
		case bytes.HasPrefix(head, []byte("ARROW1")):
			kind = "arrow-file"
		case bytes.HasPrefix(head, []byte{0xff, 0xff, 0xff, 0xff}):
			kind = "arrow"
		case strings.HasSuffix(strings.ToLower(path), ".csv"):
			kind = "csv"
		default:
			f.Close()
			return nil, usageError("%s: not Parquet or Arrow IPC by its first bytes; give --input-format csv for a CSV file", path)
		}
	}
	in.kind = kind
	counted := &countingReader{r: f, n: in.read}
	switch kind {
	case "parquet":
		// Pages are read as they are decoded, not whole column chunks:
		// memory follows the page size, not the row group's.
		props := parquet.NewReaderProperties(memory.DefaultAllocator)
		props.BufferedStreamEnabled = true
		pf, err := file.NewParquetReader(&countingReaderAt{f: f, n: in.read}, file.WithReadProps(props))
		if err != nil {
			f.Close()
			return nil, usageError("%s: not a Parquet file: %v", path, err)
		}
		in.rows = pf.NumRows()
		fr, err := pqarrow.NewFileReader(pf, pqarrow.ArrowReadProperties{BatchSize: 64 << 10}, memory.DefaultAllocator)
		if err != nil {
			f.Close()
			return nil, usageError("%s: %v", path, err)
		}
		rr, err := fr.GetRecordReader(context.Background(), nil, nil)
		if err != nil {
			f.Close()
			return nil, usageError("%s: %v", path, err)
		}
		in.records = rr
		in.close = func() { rr.Release(); pf.Close() }
	case "csv":
		opts := []csv.Option{csv.WithHeader(true), csv.WithChunk(32 << 10), csv.WithNullReader(true, "")}
		if len(types) > 0 {
			opts = append(opts, csv.WithColumnTypes(types))
		}
		r := csv.NewInferringReader(bufio.NewReaderSize(counted, 1<<20), opts...)
		in.records = r
		in.close = func() { r.Release(); f.Close() }
	case "arrow":
		in.stream = counted
	case "arrow-file":
		fr, err := ipc.NewFileReader(&countingReaderAt{f: f, n: in.read})
		if err != nil {
			f.Close()
			return nil, usageError("%s: not an Arrow IPC file: %v", path, err)
		}
		in.records = &fileRecords{fr: fr}
		in.close = func() { fr.Close(); f.Close() }
	default:
		f.Close()
		return nil, usageError("--input-format %q: want auto, parquet, csv, arrow or arrow-file", kind)
	}
	return in, nil
}

type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// countingReaderAt counts the bytes a random-access reader read, for the
// progress of a Parquet or Arrow file.
type countingReaderAt struct {
	f *os.File
	n *atomic.Int64
}

func (c *countingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	n, err := c.f.ReadAt(p, off)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingReaderAt) Seek(offset int64, whence int) (int64, error) {
	return c.f.Seek(offset, whence)
}

func (c *countingReaderAt) Read(p []byte) (int, error) {
	n, err := c.f.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// fileRecords reads an Arrow IPC file's batches in order.
type fileRecords struct {
	fr  *ipc.FileReader
	i   int
	cur arrow.RecordBatch
	err error
}

func (r *fileRecords) Retain()                        {}
func (r *fileRecords) Release()                       {}
func (r *fileRecords) Schema() *arrow.Schema          { return r.fr.Schema() }
func (r *fileRecords) Record() arrow.RecordBatch      { return r.cur }
func (r *fileRecords) RecordBatch() arrow.RecordBatch { return r.cur }
func (r *fileRecords) Err() error                     { return r.err }
func (r *fileRecords) Next() bool {
	if r.i >= r.fr.NumRecords() {
		return false
	}
	r.cur, r.err = r.fr.Record(r.i)
	r.i++
	return r.err == nil
}

// progressReporter shows a delivery's progress on stderr: a bar that
// redraws in place on a terminal, a line every few seconds otherwise, and
// the totals at the end either way.
type progressReporter struct {
	w        io.Writer
	bar      *progressbar.ProgressBar
	in       *input
	start    time.Time
	last     time.Time
	rows     atomic.Int64
	sent     atomic.Int64
	terminal bool
}

func newProgress(w io.Writer, in *input, terminal bool) *progressReporter {
	p := &progressReporter{w: w, in: in, start: time.Now(), last: time.Now(), terminal: terminal}
	if terminal {
		max := in.size
		desc := "reading " + in.kind
		p.bar = progressbar.NewOptions64(max, progressbar.OptionSetWriter(w), progressbar.OptionShowBytes(true),
			progressbar.OptionSetDescription(desc), progressbar.OptionShowCount(), progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionSetWidth(30), progressbar.OptionClearOnFinish(), progressbar.OptionFullWidth())
	}
	return p
}

// update is deliverclient's progress callback.
func (p *progressReporter) update(pr deliverclient.Progress) {
	p.rows.Store(pr.Rows)
	p.sent.Store(pr.Bytes)
	read := p.in.read.Load()
	if p.bar != nil {
		p.bar.Describe(fmt.Sprintf("%d rows, %s of Arrow sent", pr.Rows, megabytes(pr.Bytes)))
		_ = p.bar.Set64(read)
		return
	}
	if time.Since(p.last) >= 2*time.Second {
		p.last = time.Now()
		fmt.Fprintf(p.w, "  %s  %d rows  %s of Arrow sent  %s of %s read  %s/s\n", time.Since(p.start).Round(time.Second), pr.Rows,
			megabytes(pr.Bytes), megabytes(read), megabytes(p.in.size), megabytes(int64(float64(pr.Bytes)/time.Since(p.start).Seconds())))
	}
}

// done prints the totals.
func (p *progressReporter) done(d *deliveryv1.Delivery) {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
	secs := time.Since(p.start).Seconds()
	rows, sent := p.rows.Load(), p.sent.Load()
	if d != nil {
		rows, sent = d.GetProgress().GetRows(), d.GetProgress().GetBytesIn()
		fmt.Fprintf(p.w, "sent %d rows, %s of Arrow in %.1fs (%s/s, %.0f rows/s)\n", rows, megabytes(sent), secs, megabytes(int64(float64(sent)/secs)), float64(rows)/secs)
		return
	}
	// Failed: what went before it did (#22: this said 0 after 900 MB).
	what := fmt.Sprintf("%s of Arrow", megabytes(sent))
	if rows > 0 {
		what = fmt.Sprintf("%d rows, %s", rows, what)
	}
	fmt.Fprintf(p.w, "sent %s in %.1fs before the delivery failed\n", what, secs)
}

func megabytes(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/1e6) }

func deliverCommand() *cobra.Command {
	c := &clientConfig{}
	var (
		destination, outputName, key, kind string
		types                              []string
		progress                           string
		resume                             int
	)
	cmd := &cobra.Command{
		Use:   "deliver FILE --destination D",
		Short: "Deliver a Parquet, CSV or Arrow IPC file to a destination, streamed, with a progress bar",
		Long: `Reads FILE as a stream (Parquet by row group, CSV with types inferred by
Arrow's CSV reader and overridable with --csv-type, Arrow IPC stream or file)
and sends it to the destination with the Deliver RPC, showing progress on
stderr (a bar on a terminal, lines otherwise). The answer, what landed, goes
to stdout. With --resume N and an idempotency key, a stream that breaks
(or that the service interrupts for idling or for its receive budget) is
resumed up to N times from where the service holds it, reading FILE again
and skipping what was sent: run the same command again after a crash and
it continues the interrupted delivery. Exit codes: 0 landed, 2 invalid
input, 3 not found or not allowed, 4 the delivery failed (see 'sluice
workflow show'), 5 unavailable.`,
		RunE: run(c, 1, func(cmd *cobra.Command, p printer, args []string) error {
			if destination == "" {
				return usageError("--destination is required")
			}
			dest, err := c.name("destinations", destination)
			if err != nil {
				return err
			}
			overrides, err := csvTypes(types)
			if err != nil {
				return err
			}
			in, err := openInput(args[0], kind, overrides)
			if err != nil {
				return err
			}
			defer in.close()
			terminal := progress == "bar" || progress == "auto" && isTerminal(cmd.ErrOrStderr())
			var pr *progressReporter
			if progress != "none" {
				pr = newProgress(cmd.ErrOrStderr(), in, terminal)
			}
			start := &deliveryv1.DeliveryStart{Destination: dest, OutputName: outputName, IdempotencyKey: key}
			opts := deliverclient.Options{CallOptions: c.call()}
			if pr != nil {
				opts.Progress = pr.update
			}
			if resume > 0 && key == "" {
				return usageError("--resume needs --idempotency-key: it names the delivery to resume")
			}
			var d *deliveryv1.Delivery
			err = conn(c, "delivery", func(cc *grpc.ClientConn) error {
				client := deliveryv1.NewDeliveryServiceClient(cc)
				if resume > 0 {
					// Each attempt reads the file again into the same Arrow
					// IPC bytes, so that an offset means the same byte.
					first := true
					open := func() (io.Reader, error) {
						if first {
							first = false
							return ipcStream(in), nil
						}
						again, err := openInput(args[0], kind, overrides)
						if err != nil {
							return nil, err
						}
						return ipcStream(again), nil
					}
					d, err = deliverclient.DeliverResumable(cmd.Context(), client, start, open, opts, resume+1)
					return err
				}
				if in.stream != nil {
					d, err = deliverclient.DeliverStream(cmd.Context(), client, start, in.stream, opts)
				} else {
					d, err = deliverclient.Deliver(cmd.Context(), client, start, in.records, opts)
				}
				return err
			})
			if pr != nil {
				pr.done(d)
			}
			if err != nil {
				return err
			}
			return printDelivery(p, d)
		}),
	}
	f := cmd.Flags()
	f.StringVar(&destination, "destination", "", "the destination (id or name) to deliver to")
	f.StringVar(&outputName, "output-name", "", "a name for the output ({{output_name}} in file names)")
	f.StringVar(&key, "idempotency-key", "", "a key that makes delivering the same file twice write once")
	f.StringVar(&kind, "input-format", "auto", "auto, parquet, csv, arrow (IPC stream) or arrow-file (IPC file)")
	f.StringSliceVar(&types, "csv-type", nil, "a CSV column's type instead of the inferred one: COLUMN=int64|float64|string|bool|date|timestamp; repeatable")
	f.StringVar(&progress, "progress", "auto", "auto (a bar on a terminal, lines otherwise), bar, lines or none")
	f.IntVar(&resume, "resume", 0, "resume an interrupted or broken stream up to this many times, from where the service holds it (needs --idempotency-key; running the same command again continues an interrupted delivery)")
	c.addClientFlags(f)
	return cmd
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// ipcStream answers in's Arrow IPC bytes: the file's own for an Arrow IPC
// stream, else its batches written as one (the same bytes every time).
func ipcStream(in *input) io.Reader {
	if in.stream != nil {
		return in.stream
	}
	pr, pw := io.Pipe()
	go func() {
		defer in.close()
		iw := ipc.NewWriter(pw, ipc.WithSchema(in.records.Schema()))
		for in.records.Next() {
			if err := iw.Write(in.records.RecordBatch()); err != nil {
				pw.CloseWithError(err)
				return
			}
		}
		if err := in.records.Err(); err != nil {
			pw.CloseWithError(err)
			return
		}
		pw.CloseWithError(iw.Close())
	}()
	return pr
}
