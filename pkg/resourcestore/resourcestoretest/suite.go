// Package resourcestoretest is the conformance suite every resource table
// passes on every backend (SQLite and PostgreSQL).
package resourcestoretest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/testing/protocmp"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/resourcestore"
)

// Fixture describes the resource under test.
type Fixture[T proto.Message] struct {
	// Open answers a fresh, empty table for one subtest.
	Open func(t *testing.T) *resourcestore.Table[T]
	// New answers a valid resource with the given name.
	New func(name string) T
	// Change alters a resource's content in place.
	Change func(T)
}

// Run runs the conformance suite.
func Run[T proto.Message](t *testing.T, f Fixture[T]) {
	ctx := context.Background()
	const parentA, parentB = "tenants/a/environments/production", "tenants/b/environments/production"
	name := func(parent string, i int) string { return fmt.Sprintf("%s/items/item-%02d", parent, i) }

	t.Run("CreateThenGet", func(t *testing.T) {
		tab := f.Open(t)
		created, err := tab.Create(ctx, parentA, f.New(name(parentA, 1)))
		if err != nil {
			t.Fatalf("Create: %v", err)
		}
		if str(created, "etag") == "" || ts(created, "create_time") == nil || ts(created, "update_time") == nil {
			t.Fatalf("Create did not stamp etag and times: %v", created)
		}
		got, err := tab.Get(ctx, name(parentA, 1))
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if d := cmp.Diff(created, got, protocmp.Transform()); d != "" {
			t.Fatalf("Get differs from Create (-created +got):\n%s", d)
		}
	})

	t.Run("CreateTakenName", func(t *testing.T) {
		tab := f.Open(t)
		if _, err := tab.Create(ctx, parentA, f.New(name(parentA, 1))); err != nil {
			t.Fatal(err)
		}
		_, err := tab.Create(ctx, parentA, f.New(name(parentA, 1)))
		if !errors.Is(err, apierror.ErrAlreadyExists) {
			t.Fatalf("second Create: got %v, want ErrAlreadyExists", err)
		}
	})

	t.Run("GetMissing", func(t *testing.T) {
		tab := f.Open(t)
		if _, err := tab.Get(ctx, name(parentA, 9)); !errors.Is(err, apierror.ErrNotFound) {
			t.Fatalf("Get missing: got %v, want ErrNotFound", err)
		}
	})

	t.Run("ListPagesAreBoundedInBytes", func(t *testing.T) {
		tab := f.Open(t)
		const n, each = 30, 100 << 10
		for i := range n {
			m := f.New(name(parentA, i))
			// An unknown field of 100 KiB inflates any message type.
			m.ProtoReflect().SetUnknown(protowire.AppendBytes(protowire.AppendTag(nil, 9999, protowire.BytesType), make([]byte, each)))
			if _, err := tab.Create(ctx, parentA, m); err != nil {
				t.Fatal(err)
			}
		}
		var all []string
		after, pages := "", 0
		for {
			page, next, err := tab.List(ctx, parentA, after, 1000)
			if err != nil {
				t.Fatal(err)
			}
			pages++
			if len(page)*each > resourcestore.MaxPageBytes+each {
				t.Fatalf("page %d holds %d messages of %d bytes: over the %d byte bound", pages, len(page), each, resourcestore.MaxPageBytes)
			}
			for _, m := range page {
				all = append(all, str(m, "name"))
			}
			if next == "" {
				break
			}
			after = next
		}
		if len(all) != n || pages < 3 {
			t.Fatalf("listed %d messages in %d pages, want %d in at least 3", len(all), pages, n)
		}
		for i, got := range all {
			if got != name(parentA, i) {
				t.Fatalf("message %d is %s, want %s", i, got, name(parentA, i))
			}
		}
	})

	t.Run("ListPagesInNameOrderWithinParent", func(t *testing.T) {
		tab := f.Open(t)
		for _, i := range []int{5, 1, 7, 3, 2, 6, 4} {
			if _, err := tab.Create(ctx, parentA, f.New(name(parentA, i))); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := tab.Create(ctx, parentB, f.New(name(parentB, 1))); err != nil {
			t.Fatal(err)
		}
		var got []string
		after, pages := "", 0
		for {
			items, next, err := tab.List(ctx, parentA, after, 3)
			if err != nil {
				t.Fatalf("List: %v", err)
			}
			pages++
			for _, it := range items {
				got = append(got, str(it, "name"))
			}
			if next == "" {
				break
			}
			after = next
			if pages > 10 {
				t.Fatal("List does not end")
			}
		}
		var want []string
		for i := 1; i <= 7; i++ {
			want = append(want, name(parentA, i))
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("listed names (-want +got):\n%s", d)
		}
		if pages != 3 {
			t.Fatalf("7 items in pages of 3 took %d pages, want 3", pages)
		}
	})

	t.Run("ListDescendingPagesInReverseNameOrder", func(t *testing.T) {
		tab := f.Open(t)
		for _, i := range []int{5, 1, 7, 3, 2, 6, 4} {
			if _, err := tab.Create(ctx, parentA, f.New(name(parentA, i))); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := tab.Create(ctx, parentB, f.New(name(parentB, 9))); err != nil {
			t.Fatal(err)
		}
		var got []string
		before, pages := "", 0
		for {
			items, next, err := tab.ListDescending(ctx, parentA, before, 3)
			if err != nil {
				t.Fatalf("ListDescending: %v", err)
			}
			pages++
			for _, it := range items {
				got = append(got, str(it, "name"))
			}
			if next == "" || pages > 10 {
				break
			}
			before = next
		}
		var want []string
		for i := 7; i >= 1; i-- {
			want = append(want, name(parentA, i))
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("listed names (-want +got):\n%s", d)
		}
		if pages != 3 {
			t.Fatalf("7 items in pages of 3 took %d pages, want 3", pages)
		}
	})

	t.Run("UpdateChecksEtag", func(t *testing.T) {
		tab := f.Open(t)
		created, err := tab.Create(ctx, parentA, f.New(name(parentA, 1)))
		if err != nil {
			t.Fatal(err)
		}
		updated, err := tab.Update(ctx, name(parentA, 1), str(created, "etag"), func(m T) error { f.Change(m); return nil })
		if err != nil {
			t.Fatalf("Update with the current etag: %v", err)
		}
		if str(updated, "etag") == str(created, "etag") {
			t.Fatal("Update kept the etag although the content changed")
		}
		if !proto.Equal(ts(updated, "create_time"), ts(created, "create_time")) {
			t.Fatal("Update changed create_time")
		}
		if _, err := tab.Update(ctx, name(parentA, 1), str(created, "etag"), func(T) error { return nil }); !errors.Is(err, apierror.ErrEtagMismatch) {
			t.Fatalf("Update with a stale etag: got %v, want ErrEtagMismatch", err)
		}
		boom := errors.New("boom")
		if _, err := tab.Update(ctx, name(parentA, 1), "", func(m T) error { f.Change(m); return boom }); !errors.Is(err, boom) {
			t.Fatalf("Update whose mutation fails: got %v, want boom", err)
		}
		got, err := tab.Get(ctx, name(parentA, 1))
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(updated, got, protocmp.Transform()); d != "" {
			t.Fatalf("a failed Update changed the row (-want +got):\n%s", d)
		}
		if _, err := tab.Update(ctx, name(parentA, 9), "", func(T) error { return nil }); !errors.Is(err, apierror.ErrNotFound) {
			t.Fatalf("Update missing: got %v, want ErrNotFound", err)
		}
	})

	t.Run("ConcurrentUpdatesWithOneEtagOneWins", func(t *testing.T) {
		tab := f.Open(t)
		created, err := tab.Create(ctx, parentA, f.New(name(parentA, 1)))
		if err != nil {
			t.Fatal(err)
		}
		const n = 8
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			wins int
		)
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := tab.Update(ctx, name(parentA, 1), str(created, "etag"), func(m T) error { f.Change(m); return nil })
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case !errors.Is(err, apierror.ErrEtagMismatch):
					t.Errorf("concurrent Update: %v", err)
				}
			}()
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("%d of %d updates with the same etag succeeded, want exactly 1", wins, n)
		}
	})

	t.Run("AlsoFailureRollsBack", func(t *testing.T) {
		tab := f.Open(t)
		boom := errors.New("side table write failed")
		fail := func(context.Context, *sql.Tx) error { return boom }
		if _, err := tab.Create(ctx, parentA, f.New(name(parentA, 1)), fail); !errors.Is(err, boom) {
			t.Fatalf("Create with a failing Also: %v", err)
		}
		if _, err := tab.Get(ctx, name(parentA, 1)); !errors.Is(err, apierror.ErrNotFound) {
			t.Fatalf("a Create whose Also failed left a row: %v", err)
		}
		created, err := tab.Create(ctx, parentA, f.New(name(parentA, 1)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tab.Update(ctx, name(parentA, 1), "", func(m T) error { f.Change(m); return nil }, fail); !errors.Is(err, boom) {
			t.Fatalf("Update with a failing Also: %v", err)
		}
		if err := tab.Delete(ctx, name(parentA, 1), "", fail); !errors.Is(err, boom) {
			t.Fatalf("Delete with a failing Also: %v", err)
		}
		got, err := tab.Get(ctx, name(parentA, 1))
		if err != nil {
			t.Fatalf("a Delete whose Also failed removed the row: %v", err)
		}
		if d := cmp.Diff(created, got, protocmp.Transform()); d != "" {
			t.Fatalf("an Update whose Also failed changed the row (-want +got):\n%s", d)
		}
	})

	t.Run("DeleteChecksEtag", func(t *testing.T) {
		tab := f.Open(t)
		created, err := tab.Create(ctx, parentA, f.New(name(parentA, 1)))
		if err != nil {
			t.Fatal(err)
		}
		if err := tab.Delete(ctx, name(parentA, 1), "stale"); !errors.Is(err, apierror.ErrEtagMismatch) {
			t.Fatalf("Delete with a stale etag: got %v, want ErrEtagMismatch", err)
		}
		if err := tab.Delete(ctx, name(parentA, 1), str(created, "etag")); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if _, err := tab.Get(ctx, name(parentA, 1)); !errors.Is(err, apierror.ErrNotFound) {
			t.Fatalf("Get after Delete: got %v, want ErrNotFound", err)
		}
		if err := tab.Delete(ctx, name(parentA, 1), ""); !errors.Is(err, apierror.ErrNotFound) {
			t.Fatalf("Delete twice: got %v, want ErrNotFound", err)
		}
	})
}

func str(m proto.Message, field string) string {
	r := m.ProtoReflect()
	return r.Get(r.Descriptor().Fields().ByName(protoreflect.Name(field))).String()
}

func ts(m proto.Message, field string) *timestamppb.Timestamp {
	r := m.ProtoReflect()
	fd := r.Descriptor().Fields().ByName(protoreflect.Name(field))
	if !r.Has(fd) {
		return nil
	}
	return r.Get(fd).Message().Interface().(*timestamppb.Timestamp)
}
