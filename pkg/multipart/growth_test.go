package multipart

import (
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/sluicehq/sluice/pkg/testenv"
)

// Parts double every partsPerStep parts, up to half the pool, so that
// 10,000 parts carry objects far larger than 10,000 buffers.
func TestPartBuffersSchedule(t *testing.T) {
	for _, c := range []struct {
		part    int32
		poolCap int
		want    int
	}{
		{1, 8, 1}, {2000, 8, 1}, {2001, 8, 2}, {4000, 8, 2}, {4001, 8, 4}, {10000, 8, 4},
		{6001, 32, 8}, {8001, 32, 16}, {10000, 64, 16}, {10000, 1, 1}, {5000, 2, 1},
	} {
		if got := partBuffers(c.part, c.poolCap); got != c.want {
			t.Errorf("part %d with a pool of %d: %d buffers, want %d", c.part, c.poolCap, got, c.want)
		}
	}
	// What 10,000 parts of 16 MiB buffers carry with the default pool.
	var total int64
	for n := int32(1); n <= MaxParts; n++ {
		total += int64(partBuffers(n, 8)) * DefaultPartSize
	}
	if total < 450<<30 {
		t.Errorf("10,000 parts carry %d GiB, want at least 450", total>>30)
	}
}

// A part body spanning buffers reads back whole and rewinds, as a retry
// needs.
func TestPartBodyReadsAndRewinds(t *testing.T) {
	bufs := [][]byte{[]byte("abc"), []byte("defgh"), []byte("i")}
	body := newPartBody(bufs)
	for range 2 {
		got, err := io.ReadAll(io.LimitReader(body, 100))
		if err != nil || string(got) != "abcdefghi" {
			t.Fatalf("read %q, %v", got, err)
		}
		if _, err := body.Seek(0, io.SeekStart); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := body.Seek(4, io.SeekStart); err != nil {
		t.Fatal(err)
	}
	p := make([]byte, 3)
	if n, _ := body.Read(p); string(p[:n]) != "efg" {
		t.Fatalf("after Seek(4): %q", p[:n])
	}
}

// With parts doubling every two parts, an object lands in parts of one,
// two and four buffers, whole and verified, and every buffer comes back.
func TestGrowingPartsLandAsOneObject(t *testing.T) {
	defer func(old int32) { partsPerStep = old }(partsPerStep)
	partsPerStep = 2
	m := testenv.SharedMinIO(t)
	client, bucket := m.S3("", ""), testenv.NewBucket(t, m)
	pool, err := NewPool(8, MinPartSize)
	if err != nil {
		t.Fatal(err)
	}
	// 5+5+10+10+20 MiB and a last part of 3 MiB.
	data := make([]byte, 53<<20)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	u := New(ctx, client, pool, Object{Bucket: bucket, Key: "grow.bin"}, 2)
	for off := 0; off < len(data); off += 3 << 20 {
		if _, err := u.Write(data[off:min(len(data), off+3<<20)]); err != nil {
			t.Fatal(err)
		}
	}
	res, err := u.Close()
	if err != nil {
		t.Fatal(err)
	}
	if res.Parts != 6 {
		t.Fatalf("%d parts, want 6", res.Parts)
	}
	attrs, err := client.GetObjectAttributes(ctx, &s3.GetObjectAttributesInput{Bucket: aws.String(bucket), Key: aws.String("grow.bin"),
		ObjectAttributes: []types.ObjectAttributes{types.ObjectAttributesObjectParts, types.ObjectAttributesChecksum}, MaxParts: aws.Int32(100)})
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int64
	for _, p := range attrs.ObjectParts.Parts {
		sizes = append(sizes, aws.ToInt64(p.Size)>>20)
	}
	if len(sizes) != 6 || sizes[0] != 5 || sizes[2] != 10 || sizes[4] != 20 || sizes[5] != 3 {
		t.Errorf("part sizes in MiB %v, want [5 5 10 10 20 3]", sizes)
	}
	if got := aws.ToString(attrs.Checksum.ChecksumCRC32C); got != res.CRC32C {
		t.Errorf("MinIO keeps CRC32C %q, the upload answered %q", got, res.CRC32C)
	}
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("grow.bin")})
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(out.Body)
	out.Body.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("the object's %d bytes differ from the %d written (%v)", len(got), len(data), err)
	}
	if now, peak := pool.InUse(); now != 0 || peak > 8 {
		t.Fatalf("buffers out %d, peak %d", now, peak)
	}
}

// An upload a crash interrupted is continued: the same bytes written
// again keep the parts S3 already holds (same number, size and CRC32C),
// send the rest, and the object is whole; a part that differs is sent.
func TestResumeFromKeepsMatchingParts(t *testing.T) {
	m := testenv.SharedMinIO(t)
	client, bucket := m.S3("", ""), testenv.NewBucket(t, m)
	pool, err := NewPool(6, MinPartSize)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 4*MinPartSize+1000)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var id string
	crashed := New(ctx, client, pool, Object{Bucket: bucket, Key: "resumed.bin"}, 1)
	crashed.OnCreate = func(uploadID string) error { id = uploadID; return nil }
	if _, err := crashed.Write(data[:3*MinPartSize]); err != nil {
		t.Fatal(err)
	}
	var parts []types.Part
	for range 100 { // the crash comes once two parts are stored
		out, err := client.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(bucket), Key: aws.String("resumed.bin"), UploadId: aws.String(id)})
		if err != nil {
			t.Fatal(err)
		}
		if parts = out.Parts; len(parts) >= 2 {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(parts) < 2 {
		t.Fatalf("%d parts stored before the crash", len(parts))
	}
	changed := bytes.Clone(data)
	changed[10] ^= 1 // part 1 differs now: it must be sent again
	resumed := New(ctx, client, pool, Object{Bucket: bucket, Key: "resumed.bin"}, 2)
	resumed.ResumeFrom(id, parts)
	var kept []int32
	var mu sync.Mutex
	resumed.OnReuse = func(n int32) { mu.Lock(); kept = append(kept, n); mu.Unlock() }
	if _, err := resumed.Write(changed); err != nil {
		t.Fatal(err)
	}
	res, err := resumed.Close()
	if err != nil {
		t.Fatal(err)
	}
	if len(kept) != len(parts)-1 || slices.Contains(kept, 1) {
		t.Fatalf("kept parts %v of the %d stored, want all but part 1", kept, len(parts))
	}
	out, err := client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("resumed.bin")})
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(out.Body)
	out.Body.Close()
	if !bytes.Equal(got, changed) || res.Parts != 5 {
		t.Fatalf("the resumed object differs from what was written (%d parts)", res.Parts)
	}
}
