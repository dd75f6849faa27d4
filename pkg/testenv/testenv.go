// Package testenv is the integration test harness: it gives tests the real
// servers Sluice runs against, MinIO, moto and PostgreSQL (started by
// pkg/localserver on 127.0.0.1, stopped by process id), and the database
// backends every store's conformance suite runs on.
//
// A missing prerequisite fails the test with the command that fixes it; no
// test skips for want of a server. Packages that share servers between tests
// call Main from TestMain so that the servers stop when the package ends.
package testenv

import (
	"context"
	"errors"
	"os"
	"sync"
	"testing"

	"github.com/sluicehq/sluice/pkg/localserver"
)

// MinIO, Moto and Postgres are the running servers tests get.
type (
	MinIO        = localserver.MinIO
	Moto         = localserver.Moto
	Postgres     = localserver.Postgres
	CustomerRole = localserver.CustomerRole
)

// shared holds servers started once per test binary and stopped by Main.
var shared struct {
	sync.Mutex
	inMain bool
	stops  []func()
}

// Main runs the package's tests and then stops every shared server. Call it
// from TestMain: `func TestMain(m *testing.M) { testenv.Main(m) }`.
func Main(m interface{ Run() int }) {
	shared.Lock()
	shared.inMain = true
	shared.Unlock()
	code := m.Run()
	shared.Lock()
	stops := shared.stops
	shared.stops = nil
	shared.Unlock()
	for i := len(stops) - 1; i >= 0; i-- {
		stops[i]()
	}
	os.Exit(code)
}

var errNoMain = errors.New("shared test servers need `func TestMain(m *testing.M) { testenv.Main(m) }` in the package, so that they stop when its tests end")

// once starts a shared server the first time and answers it afterwards; a
// failed start is remembered so that later tests fail fast too.
type once[T any] struct {
	once sync.Once
	val  T
	err  error
}

func (o *once[T]) get(tb testing.TB, start func() (T, func(), error)) T {
	tb.Helper()
	shared.Lock()
	inMain := shared.inMain
	shared.Unlock()
	if !inMain {
		tb.Fatalf("testenv: %v", errNoMain)
	}
	o.once.Do(func() {
		var stop func()
		o.val, stop, o.err = start()
		if o.err == nil {
			shared.Lock()
			shared.stops = append(shared.stops, stop)
			shared.Unlock()
		}
	})
	if o.err != nil {
		tb.Fatalf("testenv: %v", o.err)
	}
	return o.val
}

var (
	sharedMinIO    once[*MinIO]
	sharedMoto     once[*Moto]
	sharedPostgres once[*Postgres]
)

// SharedMinIO answers the package's MinIO, started on first use and stopped
// by Main. Tests sharing it use buckets of their own (NewBucket).
func SharedMinIO(tb testing.TB) *MinIO {
	tb.Helper()
	return sharedMinIO.get(tb, func() (*MinIO, func(), error) {
		m, err := localserver.StartMinIO()
		if err != nil {
			return nil, nil, err
		}
		return m, m.Stop, nil
	})
}

// NewMinIO starts a MinIO for one test and stops it when the test ends.
func NewMinIO(tb testing.TB) *MinIO {
	tb.Helper()
	m, err := localserver.StartMinIO()
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	tb.Cleanup(m.Stop)
	return m
}

// NewMinIOWithKMS starts a MinIO for one test whose built-in KMS holds one
// key named keyName, so that SSE-S3 and SSE-KMS work.
func NewMinIOWithKMS(tb testing.TB, keyName string) *MinIO {
	tb.Helper()
	return newMinIOWith(tb, localserver.MinIOOptions{KMSKeyName: keyName})
}

// NewMinIOWithTLS starts a MinIO for one test that serves HTTPS only, with
// a certificate from a fresh CA (its CAFile), as S3 itself is served.
func NewMinIOWithTLS(tb testing.TB) *MinIO {
	tb.Helper()
	return newMinIOWith(tb, localserver.MinIOOptions{TLS: true})
}

func newMinIOWith(tb testing.TB, o localserver.MinIOOptions) *MinIO {
	tb.Helper()
	m, err := localserver.StartMinIOWith(o)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	tb.Cleanup(m.Stop)
	return m
}

// NewBucket creates a bucket with a unique name for one test.
func NewBucket(tb testing.TB, m *MinIO) string {
	tb.Helper()
	name, err := m.CreateBucket(context.Background(), "test-")
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return name
}

// SharedMoto answers the package's moto, started on first use and stopped
// by Main. Tests sharing it name their roles uniquely.
func SharedMoto(tb testing.TB) *Moto {
	tb.Helper()
	return sharedMoto.get(tb, func() (*Moto, func(), error) {
		m, err := localserver.StartMoto()
		if err != nil {
			return nil, nil, err
		}
		return m, m.Stop, nil
	})
}

// NewCustomerRole creates on moto a bucket and a role that trusts the
// platform user with externalID, with the permissions policy given (the
// whole bucket when empty).
func NewCustomerRole(tb testing.TB, m *Moto, name, externalID, permissions string) CustomerRole {
	tb.Helper()
	r, err := m.CreateCustomerRole(context.Background(), name, externalID, permissions)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	return r
}

// SharedPostgres answers the package's PostgreSQL, started on first use and
// stopped by Main.
func SharedPostgres(tb testing.TB) *Postgres {
	tb.Helper()
	return sharedPostgres.get(tb, func() (*Postgres, func(), error) {
		p, err := localserver.StartPostgres()
		if err != nil {
			return nil, nil, err
		}
		return p, p.Stop, nil
	})
}

// NewDatabase creates an empty database on the shared PostgreSQL for one
// test, dropped when it ends, and answers its DSN.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	dsn, drop, err := SharedPostgres(tb).CreateDatabase(context.Background())
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	tb.Cleanup(drop)
	return dsn
}

// NewIdP starts a test OpenID provider (cmd/sluice-testidp) as its own
// process for one test, stopped when the test ends.
func NewIdP(tb testing.TB, o localserver.IdPOptions) *localserver.IdP {
	tb.Helper()
	idp, err := localserver.StartIdP(o)
	if err != nil {
		tb.Fatalf("testenv: %v", err)
	}
	tb.Cleanup(idp.Stop)
	return idp
}
