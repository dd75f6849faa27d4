package staging_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/sluicehq/sluice/pkg/staging"
	"github.com/sluicehq/sluice/pkg/testenv"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// stores are the two staging stores, each opened fresh with a cap.
func stores(t *testing.T) map[string]func(t *testing.T, max int64) staging.Store {
	return map[string]func(t *testing.T, max int64) staging.Store{
		"dir": func(t *testing.T, max int64) staging.Store {
			s, err := staging.NewDir(t.TempDir(), max)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
		"s3": func(t *testing.T, max int64) staging.Store {
			m := testenv.SharedMinIO(t)
			pool, err := staging.NewS3Pool(2)
			if err != nil {
				t.Fatal(err)
			}
			s, err := staging.NewS3(context.Background(), m.S3("", ""), testenv.NewBucket(t, m), "staging", pool, max)
			if err != nil {
				t.Fatal(err)
			}
			return s
		},
	}
}

// The conformance suite both stores pass.
func TestStores(t *testing.T) {
	ctx := context.Background()
	for name, open := range stores(t) {
		t.Run(name, func(t *testing.T) {
			t.Run("StagesAndReadsBack", func(t *testing.T) {
				s := open(t, 0)
				a, b := data(t, 7<<20), data(t, 12345) // more than one S3 segment
				stage(t, s, "d1", a, b)
				want := append(append([]byte{}, a...), b...)
				got, err := readAll(t, s, "d1")
				if err != nil || !bytes.Equal(got, want) {
					t.Fatalf("read back %d bytes of %d, %v", len(got), len(want), err)
				}
				if n, err := s.Size(ctx, "d1"); err != nil || n != int64(len(want)) {
					t.Fatalf("size %d, %v", n, err)
				}
				if s.Used() < int64(len(want)) {
					t.Fatalf("used %d for %d bytes", s.Used(), len(want))
				}
			})
			t.Run("AppendContinuesAfterWhatIsHeld", func(t *testing.T) {
				s := open(t, 0)
				a, b := data(t, 3000), data(t, 4000)
				stage(t, s, "d1", a)
				w, held, err := s.Append(ctx, "d1")
				if err != nil || held != 3000 || w.Staged() != 3000 {
					t.Fatalf("append: held %d, %v", held, err)
				}
				if _, err := w.Write(b); err != nil {
					t.Fatal(err)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				got, err := readAll(t, s, "d1")
				if err != nil || !bytes.Equal(got, append(append([]byte{}, a...), b...)) {
					t.Fatalf("after append: %d bytes, %v", len(got), err)
				}
				if _, _, err := s.Append(ctx, "d2"); !errors.Is(err, staging.ErrNotFound) {
					t.Fatalf("append to nothing: %v", err)
				}
			})
			t.Run("CreateReplacesAndDeleteRemoves", func(t *testing.T) {
				s := open(t, 0)
				stage(t, s, "d1", data(t, 5000))
				b := data(t, 100)
				stage(t, s, "d1", b)
				if got, err := readAll(t, s, "d1"); err != nil || !bytes.Equal(got, b) {
					t.Fatalf("after a second Create: %d bytes, %v", len(got), err)
				}
				if err := s.Delete(ctx, "d1"); err != nil || s.Used() != 0 {
					t.Fatalf("delete: %v, used %d", err, s.Used())
				}
				if _, err := s.Open(ctx, "d1"); !errors.Is(err, staging.ErrNotFound) {
					t.Fatalf("open after delete: %v", err)
				}
				if _, err := s.Size(ctx, "d1"); !errors.Is(err, staging.ErrNotFound) {
					t.Fatalf("size after delete: %v", err)
				}
				if err := s.Delete(ctx, "d1"); err != nil {
					t.Fatalf("deleting twice: %v", err)
				}
			})
			t.Run("DiscardEndsWithoutKeeping", func(t *testing.T) {
				// What a succeeded delivery staged: counted, then deleted
				// with nothing left behind, and never made durable.
				s := open(t, 0)
				w, err := s.Create(ctx, "d1")
				if err != nil {
					t.Fatal(err)
				}
				a := data(t, 6<<20+123) // a stored S3 segment and an open one
				if _, err := w.Write(a); err != nil {
					t.Fatal(err)
				}
				if err := w.Discard(); err != nil {
					t.Fatal(err)
				}
				if w.Staged() != int64(len(a)) {
					t.Fatalf("staged %d of %d bytes", w.Staged(), len(a))
				}
				if err := s.Delete(ctx, "d1"); err != nil || s.Used() != 0 {
					t.Fatalf("delete after discard: %v, used %d", err, s.Used())
				}
				if _, err := s.Open(ctx, "d1"); !errors.Is(err, staging.ErrNotFound) {
					t.Fatalf("open after discard and delete: %v", err)
				}
			})
			t.Run("CapRefusesNewStreamsAndWrites", func(t *testing.T) {
				s := open(t, 20_000)
				w, err := s.Create(ctx, "d1")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := w.Write(data(t, 15_000)); err != nil {
					t.Fatal(err)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				w, err = s.Create(ctx, "d2")
				if err != nil {
					t.Fatal(err)
				}
				if _, err := w.Write(data(t, 6_000)); !errors.Is(err, staging.ErrFull) {
					t.Fatalf("a write past the cap: %v", err)
				}
				w.Close()
				stage(t, s, "d3", data(t, 4_992)) // with framing: at the cap
				if _, err := s.Create(ctx, "d4"); !errors.Is(err, staging.ErrFull) {
					t.Fatalf("create when full (used %d): %v", s.Used(), err)
				}
			})
			t.Run("AnEmptyStreamExists", func(t *testing.T) {
				s := open(t, 0)
				w, err := s.Create(ctx, "d1")
				if err != nil {
					t.Fatal(err)
				}
				if err := w.Close(); err != nil {
					t.Fatal(err)
				}
				if n, err := s.Size(ctx, "d1"); err != nil || n != 0 {
					t.Fatalf("size of an empty stream: %d, %v", n, err)
				}
				if got, err := readAll(t, s, "d1"); err != nil || len(got) != 0 {
					t.Fatalf("read an empty stream: %d bytes, %v", len(got), err)
				}
				w, held, err := s.Append(ctx, "d1")
				if err != nil || held != 0 {
					t.Fatalf("append to an empty stream: %d, %v", held, err)
				}
				w.Close()
			})
			t.Run("RefusesBadIDs", func(t *testing.T) {
				s := open(t, 0)
				for _, id := range []string{"../escape", "", "UPPER", strings.Repeat("a", 200), "a/b"} {
					if _, err := s.Create(ctx, id); err == nil {
						t.Errorf("id %q accepted", id)
					}
				}
			})
		})
	}
}

// On S3 a crash loses at most the segment being written: the stream holds
// the stored segments, and a flipped bit is caught when read.
func TestS3SegmentsAndCorruption(t *testing.T) {
	ctx := context.Background()
	m := testenv.SharedMinIO(t)
	bucket := testenv.NewBucket(t, m)
	pool, err := staging.NewS3Pool(2)
	if err != nil {
		t.Fatal(err)
	}
	s, err := staging.NewS3(ctx, m.S3("", ""), bucket, "staging/", pool, 0)
	if err != nil {
		t.Fatal(err)
	}
	w, err := s.Create(ctx, "d1")
	if err != nil {
		t.Fatal(err)
	}
	full := data(t, staging.DefaultSegmentBytes+1000)
	if _, err := w.Write(full); err != nil {
		t.Fatal(err)
	}
	// The process dies here: the second segment was never stored.
	if n, err := s.Size(ctx, "d1"); err != nil || n != staging.DefaultSegmentBytes || w.Staged() != n {
		t.Fatalf("held after a crash: %d (writer says %d), %v", n, w.Staged(), err)
	}
	again, err := staging.NewS3(ctx, m.S3("", ""), bucket, "staging/", pool, 0)
	if err != nil || again.Used() != s.Used() {
		t.Fatalf("a store opened again counts %d, the first %d (%v)", again.Used(), s.Used(), err)
	}
	list, err := m.S3("", "").ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(bucket), Prefix: aws.String("staging/d1/")})
	var segs []string
	for _, o := range list.Contents {
		if k := aws.ToString(o.Key); !strings.HasSuffix(k, "/stream") {
			segs = append(segs, k)
		}
	}
	if err != nil || len(segs) != 1 {
		t.Fatalf("segments: %v %v", segs, err)
	}
	key := segs[0]
	out, err := m.S3("", "").GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	b := new(bytes.Buffer)
	_, _ = b.ReadFrom(out.Body)
	out.Body.Close()
	seg := b.Bytes()
	seg[100] ^= 1
	if _, err := m.S3("", "").PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String(key), Body: bytes.NewReader(seg)}); err != nil {
		t.Fatal(err)
	}
	_, err = readAll(t, s, "d1")
	var ce *staging.CorruptError
	if !errors.As(err, &ce) || ce.Offset != 0 {
		t.Fatalf("got %v, want a CorruptError in the first segment", err)
	}
}
