package testenv

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3Fault is a reverse proxy in front of a MinIO, on 127.0.0.1, that
// answers chosen requests the way S3 does when it struggles (503 SlowDown,
// 500 InternalError, with S3's XML body) or holds them until released, as
// a stalled S3 would. Everything else passes through unchanged, the Host
// header included, so that signatures still verify.
type S3Fault struct {
	// Endpoint is the proxy's URL, to give Sluice as its S3 endpoint.
	Endpoint string

	mu      sync.Mutex
	rules   []*s3Rule
	hooks   []*s3Hook
	seen    map[string]int
	release chan struct{}
}

// S3Request describes a request by what S3 sees: its bucket, its key and
// its operation.
type S3Request struct {
	Method, Bucket, Key string
	Query               url.Values
}

// UploadPart reports whether the request uploads one part of a multipart
// upload.
func (r S3Request) UploadPart() bool {
	return r.Method == http.MethodPut && r.Query.Has("partNumber") && r.Query.Has("uploadId")
}

// Part answers the part number of an UploadPart request with its upload
// id ("" for other requests), unique to one part of one object.
func (r S3Request) Part() string {
	if !r.UploadPart() {
		return ""
	}
	return r.Query.Get("uploadId") + "#" + r.Query.Get("partNumber")
}

// Complete reports whether the request completes a multipart upload.
func (r S3Request) Complete() bool {
	return r.Method == http.MethodPost && r.Query.Has("uploadId")
}

// Faults S3 answers.
const (
	SlowDown      = "SlowDown"
	InternalError = "InternalError"
)

// s3Hook runs fn once, on the first request that matches.
type s3Hook struct {
	match func(S3Request) bool
	fn    func()
}

type s3Rule struct {
	match func(S3Request) bool
	code  string // SlowDown, InternalError, or "" to hold
	left  int    // answers left; <0 for as long as the rule stands
}

// NewS3Fault starts a proxy in front of m, stopped when the test ends.
func NewS3Fault(t testing.TB, m *MinIO) *S3Fault {
	t.Helper()
	target, err := url.Parse(m.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &S3Fault{Endpoint: "http://" + ln.Addr().String(), seen: map[string]int{}, release: make(chan struct{})}
	proxy := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.Out.Host = r.In.Host // the SDK signed the proxy's host
	}}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		req := describe(r)
		if code, hold := f.fault(req); hold != nil {
			select {
			case <-hold:
			case <-r.Context().Done():
				return
			}
			if r.Context().Err() != nil {
				return // its caller left while it was held: S3 never saw it
			}
		} else if code != "" {
			status := http.StatusServiceUnavailable
			if code == InternalError {
				status = http.StatusInternalServerError
			}
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(status)
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?>`+"\n"+`<Error><Code>%s</Code><Message>injected by the test's S3 proxy</Message><Resource>%s</Resource><RequestId>S3FAULT</RequestId></Error>`, code, r.URL.Path)
			return
		}
		proxy.ServeHTTP(w, r)
	})}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() {
		f.Release()
		_ = srv.Close()
	})
	return f
}

// describe reads bucket and key from a path-style request.
func describe(r *http.Request) S3Request {
	bucket, key, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
	return S3Request{Method: r.Method, Bucket: bucket, Key: key, Query: r.URL.Query()}
}

// fault answers the fault for a request: a code to answer, or a channel
// to wait on.
func (f *S3Fault) fault(req S3Request) (string, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	kept := f.hooks[:0]
	for _, h := range f.hooks {
		if h.match(req) {
			h.fn()
			continue
		}
		kept = append(kept, h)
	}
	f.hooks = kept
	for _, r := range f.rules {
		if r.left == 0 || !r.match(req) {
			continue
		}
		if r.left > 0 {
			r.left--
		}
		if r.code == "" {
			f.seen["held"]++
			return "", f.release
		}
		f.seen[r.code]++
		return r.code, nil
	}
	return "", nil
}

// Fail answers the next n requests that match with code (SlowDown or
// InternalError); n < 0 fails them until Clear.
func (f *S3Fault) Fail(code string, n int, match func(S3Request) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, &s3Rule{match: match, code: code, left: n})
}

// When runs fn once, on the first request that matches, before the
// request goes on (or gets its fault). Every request is matched in the
// order it arrives, so match may keep a record of them.
func (f *S3Fault) When(match func(S3Request) bool, fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hooks = append(f.hooks, &s3Hook{match: match, fn: fn})
}

// Hold keeps every request that matches waiting until Release.
func (f *S3Fault) Hold(match func(S3Request) bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = append(f.rules, &s3Rule{match: match, left: -1})
}

// Release lets held requests through and drops every rule.
func (f *S3Fault) Release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = nil
	select {
	case <-f.release:
	default:
		close(f.release)
	}
	f.release = make(chan struct{})
}

// Clear drops every rule; requests already held stay held until Release.
func (f *S3Fault) Clear() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rules = nil
}

// Count answers how many requests got a fault: SlowDown, InternalError or
// "held".
func (f *S3Fault) Count(fault string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.seen[fault]
}

// S3 answers an S3 client of MinIO's root user that goes through the
// proxy, with the SDK's own retries off so that every fault shows.
func (f *S3Fault) S3(m *MinIO) *s3.Client {
	return s3.New(s3.Options{
		Region:           m.Region,
		BaseEndpoint:     aws.String(f.Endpoint),
		UsePathStyle:     true,
		Credentials:      credentials.NewStaticCredentialsProvider(m.RootUser, m.RootPassword, ""),
		RetryMaxAttempts: 1,
	})
}
