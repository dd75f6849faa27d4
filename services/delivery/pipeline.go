package delivery

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"sync/atomic"

	"github.com/apache/arrow-go/v18/arrow"
	"github.com/apache/arrow-go/v18/arrow/flight"
	"github.com/apache/arrow-go/v18/arrow/memory"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	"github.com/sluicehq/sluice/pkg/arrowingest"
	"github.com/sluicehq/sluice/pkg/fileset"
	"github.com/sluicehq/sluice/pkg/partition"
)

// progress counts what a running delivery has done; read at any time.
type progress struct {
	rows, bytesIn, bytesOut, parts atomic.Int64
	// staged counts the input bytes staged.
	staged atomic.Int64
}

func (p *progress) snapshot() *deliveryv1.DeliveryProgress {
	return &deliveryv1.DeliveryProgress{Rows: p.rows.Load(), BytesIn: p.bytesIn.Load(), BytesOut: p.bytesOut.Load(), Parts: p.parts.Load()}
}

// reset starts the counts of another attempt (staged bytes stay).
func (p *progress) reset() {
	p.rows.Store(0)
	p.bytesIn.Store(0)
	p.bytesOut.Store(0)
	p.parts.Store(0)
}

func (p *progress) part(n int) {
	p.bytesOut.Add(int64(n))
	p.parts.Add(1)
}

// schemaError is a schema the destination's format cannot carry.
type schemaError struct{ err error }

func (e *schemaError) Error() string { return e.err.Error() }
func (e *schemaError) Unwrap() error { return e.err }

// output converts one Arrow stream into a destination's objects.
type output struct {
	cfg    fileset.Config
	sink   objectSink
	limits arrowingest.Limits
	prog   *progress
	// manifest and success ask for the manifest and the success file,
	// written in this order after the last data file.
	manifest, success                 bool
	delivery, destination, outputName string
	// received is called when the stream has ended, before the last
	// files are finished; uploaded when every data file has landed, before
	// the manifest and the success file.
	received, uploaded func()
}

// run reads src to its end, converting and uploading as batches arrive,
// and answers every object that landed. On failure the object being
// written stops; what it and the others stored stays, recorded, for the
// delivery's outcome to take back or keep.
func (o *output) run(ctx context.Context, src io.Reader) (objects []*deliveryv1.DeliveredObject, err error) {
	var fw fileset.Files
	defer func() {
		if err != nil && fw != nil {
			fw.Abort() // what landed and what was stored stays recorded
		}
	}()
	r, err := arrowingest.NewReader(src, o.limits, memory.DefaultAllocator)
	if err != nil {
		return nil, err
	}
	defer r.Release()
	schema := r.Schema()
	if fw, err = fileset.Open(schema, o.cfg, o.sink); err != nil {
		return nil, &schemaError{err}
	}
	for {
		if ctx.Err() != nil {
			return nil, context.Cause(ctx) // cancelled, or the service stops
		}
		rec, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		err = fw.Write(rec)
		n := rec.NumRows()
		rec.Release()
		if err != nil {
			return nil, err
		}
		o.prog.rows.Add(n)
	}
	if o.received != nil {
		o.received()
	}
	files, err := fw.Close()
	fw = nil // closed: nothing left to abort
	if err != nil {
		return nil, err
	}
	if o.uploaded != nil {
		o.uploaded()
	}
	for _, f := range files {
		l := o.sink.landed(f.Key)
		obj := &deliveryv1.DeliveredObject{
			Key: f.Key, Rows: f.Rows, Bytes: l.bytes, Parts: int64(l.parts), Checksum: "sha256:" + l.sha256, Crc32C: l.crc32c, Kind: "data",
		}
		if len(f.Partition) > 0 {
			obj.Partition = map[string]string{}
			for _, v := range f.Partition {
				obj.Partition[v.Name] = v.Text
			}
		}
		objects = append(objects, obj)
	}
	if o.manifest {
		m, err := o.manifestOf(schema, objects)
		if err != nil {
			return nil, inStep(stepFinish, err)
		}
		obj, err := o.put(fileset.ManifestKey(o.cfg.Prefix, o.outputName), "manifest", m)
		if err != nil {
			return nil, inStep(stepFinish, err)
		}
		objects = append(objects, obj)
	}
	if o.success {
		obj, err := o.put(fileset.SuccessKey(o.cfg.Prefix, o.outputName), "success", nil)
		if err != nil {
			return nil, inStep(stepFinish, err)
		}
		objects = append(objects, obj)
	}
	return objects, nil
}

// put writes one small object.
func (o *output) put(key, kind string, body []byte) (*deliveryv1.DeliveredObject, error) {
	w, err := o.sink.Create(key)
	if err != nil {
		return nil, err
	}
	if _, err := w.Write(body); err != nil {
		_ = w.Abort()
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("%s: %w", key, err)
	}
	l := o.sink.landed(key)
	return &deliveryv1.DeliveredObject{Key: key, Bytes: l.bytes, Parts: int64(l.parts), Checksum: "sha256:" + l.sha256, Crc32C: l.crc32c, Kind: kind}, nil
}

// manifest lists what a delivery wrote, so a reader knows the set is
// complete and intact.
type manifest struct {
	Delivery    string         `json:"delivery"`
	Destination string         `json:"destination"`
	OutputName  string         `json:"output_name"`
	Rows        int64          `json:"rows"`
	Bytes       int64          `json:"bytes"`
	Files       []manifestFile `json:"files"`
	Schema      manifestSchema `json:"schema"`
}

type manifestFile struct {
	Key    string `json:"key"`
	Rows   int64  `json:"rows"`
	Bytes  int64  `json:"bytes"`
	CRC32C string `json:"crc32c"`
	SHA256 string `json:"sha256"`
	// Partition holds a partitioned output's folder values, a null as
	// JSON null.
	Partition map[string]*string `json:"partition,omitempty"`
}

type manifestSchema struct {
	Fields []manifestField `json:"fields"`
	// ArrowIPC is the schema as an Arrow IPC message, base64: exact for
	// any Arrow library.
	ArrowIPC string `json:"arrow_ipc"`
}

type manifestField struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	Nullable bool   `json:"nullable"`
}

func (o *output) manifestOf(schema *arrow.Schema, objects []*deliveryv1.DeliveredObject) ([]byte, error) {
	m := manifest{Delivery: o.delivery, Destination: o.destination, OutputName: o.outputName, Files: []manifestFile{}}
	for _, obj := range objects {
		m.Rows += obj.GetRows()
		m.Bytes += obj.GetBytes()
		mf := manifestFile{Key: obj.GetKey(), Rows: obj.GetRows(), Bytes: obj.GetBytes(), CRC32C: obj.GetCrc32C(), SHA256: obj.GetChecksum()[len("sha256:"):]}
		if len(obj.GetPartition()) > 0 {
			mf.Partition = map[string]*string{}
			for k, v := range obj.GetPartition() {
				if v == partition.Default {
					mf.Partition[k] = nil
				} else {
					mf.Partition[k] = &v
				}
			}
		}
		m.Files = append(m.Files, mf)
	}
	for _, f := range schema.Fields() {
		m.Schema.Fields = append(m.Schema.Fields, manifestField{Name: f.Name, Type: f.Type.String(), Nullable: f.Nullable})
	}
	m.Schema.ArrowIPC = base64.StdEncoding.EncodeToString(flight.SerializeSchema(schema, memory.DefaultAllocator))
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(m); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
