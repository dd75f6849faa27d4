package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/sluicehq/sluice/pkg/auth"
)

// The request fuzzer sends random requests to every method of the three
// services on a live `sluice serve`, as tokens of every kind of caller, and
// holds each answer to the promises every RPC makes: no Internal or Unknown
// (so no panic reached a caller), no hang, no answer over its bound, and a
// server that still answers afterwards.

// nasty are strings that have broken services elsewhere.
var nasty = []string{
	"", " ", "a", "c1", "d1", "exports/", "output", "tenants/acme/environments/sandbox", "tenants/acme/environments/production",
	"tenants/globex/environments/sandbox", "../../etc/passwd", "/abs", "a//b", ".", "..", "x\r\ny", "\x00", "\u202eevil",
	"\xff\xfe", "alias/aws/s3", "arn:aws:iam::123456789012:role/x", "arn:aws:s3:eu-west-1:123456789012:accesspoint/ap",
	"acme-exports", "192.168.0.1", "zz-fake-9", "us-east-1", "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
	"{{now|format:'yyyy'}}/{{file_number}}.csv", "{{", "}}", "{{now|local:'Nowhere/City'}}", `credential = "x"`, "*", "${aws:username}",
	"display_name", "bucket", "access_key.secret_access_key", "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n-----END PGP PUBLIC KEY BLOCK-----",
	strings.Repeat("x", 4097), strings.Repeat("é", 3000),
}

// collections name resources of every kind, so that random names often
// parse and reach the stores.
var collections = []string{"credentials", "destinations", "deliveries", "notifications"}

func randString(r *rand.Rand) string {
	switch r.IntN(4) {
	case 0:
		env := []string{"sandbox", "production"}[r.IntN(2)]
		tenant := []string{"acme", "globex"}[r.IntN(2)]
		return fmt.Sprintf("tenants/%s/environments/%s/%s/%s", tenant, env, collections[r.IntN(len(collections))], []string{"c1", "d1", "x", "Bad_ID"}[r.IntN(4)])
	case 1:
		b := make([]byte, r.IntN(40))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		return string(b)
	default:
		return nasty[r.IntN(len(nasty))]
	}
}

// fill sets random fields of m, nesting to depth.
func fill(r *rand.Rand, m protoreflect.Message, depth int) {
	fields := m.Descriptor().Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if r.IntN(3) == 0 || (fd.ContainingOneof() != nil && m.WhichOneof(fd.ContainingOneof()) != nil) {
			continue
		}
		switch {
		case fd.IsMap():
			mp := m.Mutable(fd).Map()
			for range r.IntN(4) {
				k := protoreflect.ValueOfString(strings.ToValidUTF8(randString(r), "?")).MapKey()
				if fd.MapKey().Kind() != protoreflect.StringKind {
					continue
				}
				mp.Set(k, value(r, m, fd.MapValue(), depth))
			}
		case fd.IsList():
			l := m.Mutable(fd).List()
			for range r.IntN(4) {
				if fd.Kind() == protoreflect.MessageKind {
					e := l.NewElement()
					fill(r, e.Message(), depth-1)
					l.Append(e)
				} else {
					l.Append(value(r, m, fd, depth))
				}
			}
		case fd.Kind() == protoreflect.MessageKind:
			if depth > 0 {
				fill(r, m.Mutable(fd).Message(), depth-1)
			}
		default:
			m.Set(fd, value(r, m, fd, depth))
		}
	}
}

func value(r *rand.Rand, parent protoreflect.Message, fd protoreflect.FieldDescriptor, depth int) protoreflect.Value {
	switch fd.Kind() {
	case protoreflect.StringKind:
		// The codec would refuse invalid UTF-8 on our side; the undecodable
		// path has its own test.
		return protoreflect.ValueOfString(strings.ToValidUTF8(randString(r), "?"))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(randString(r)))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(r.IntN(2) == 0)
	case protoreflect.EnumKind:
		if r.IntN(4) == 0 {
			return protoreflect.ValueOfEnum(protoreflect.EnumNumber(r.Int32N(2000) - 1000))
		}
		vals := fd.Enum().Values()
		return protoreflect.ValueOfEnum(vals.Get(r.IntN(vals.Len())).Number())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32([]int32{0, 1, -1, 1000, 1 << 30, -1 << 31}[r.IntN(6)])
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64([]int64{0, 1, -1, 5 << 20, 1 << 62, -1 << 63}[r.IntN(6)])
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(r.Uint32())
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(r.Uint64())
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(r.NormFloat64())
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(r.NormFloat64()))
	case protoreflect.MessageKind:
		v := parent.NewField(fd)
		if depth > 0 {
			fill(r, v.Message(), depth-1)
		}
		return v
	}
	return parent.NewField(fd)
}

type fuzzMethod struct {
	service *running
	server  string
	full    string
	desc    protoreflect.MethodDescriptor
}

// methods answers every method the running services registered.
func methods(t testing.TB, r *running) []fuzzMethod {
	var out []fuzzMethod
	for name, srv := range r.servers {
		for svc, info := range srv.GRPC().GetServiceInfo() {
			if !strings.HasPrefix(svc, "sluice.") {
				continue
			}
			d, err := protoregistry.GlobalFiles.FindDescriptorByName(protoreflect.FullName(svc))
			if err != nil {
				t.Fatalf("descriptor of %s: %v", svc, err)
			}
			for _, m := range info.Methods {
				md := d.(protoreflect.ServiceDescriptor).Methods().ByName(protoreflect.Name(m.Name))
				out = append(out, fuzzMethod{service: r, server: name, full: "/" + svc + "/" + m.Name, desc: md})
			}
		}
	}
	return out
}

func newMessage(t testing.TB, d protoreflect.MessageDescriptor) proto.Message {
	mt, err := protoregistry.GlobalTypes.FindMessageByName(d.FullName())
	if err != nil {
		t.Fatalf("type %s: %v", d.FullName(), err)
	}
	return mt.New().Interface()
}

// answers counts the codes a run saw, to show how deep it went.
var answers codeCounts

type codeCounts struct {
	mu sync.Mutex
	n  map[codes.Code]int
}

func (c *codeCounts) count(code codes.Code) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[codes.Code]int{}
	}
	c.n[code]++
}

func (c *codeCounts) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var parts []string
	for code := range codes.Code(17) {
		if c.n[code] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", code, c.n[code]))
		}
	}
	return strings.Join(parts, ", ")
}

// maxAnswerBytes bounds any answer: a page of at most MaxPageBytes of
// stored resources, presented.
const maxAnswerBytes = 2 << 20

// oneRequest sends one random request and answers what is wrong with the
// answer, or nil.
func oneRequest(t testing.TB, r *rand.Rand, ms []fuzzMethod, tokens []grpc.CallOption) error {
	m := ms[r.IntN(len(ms))]
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var opts []grpc.CallOption
	if i := r.IntN(len(tokens) + 1); i < len(tokens) {
		opts = append(opts, tokens[i])
	}
	conn := m.service.conns[m.server]
	var (
		out proto.Message
		err error
	)
	if m.desc.IsStreamingClient() {
		var s grpc.ClientStream
		s, err = conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true}, m.full, opts...)
		if err == nil {
			for range r.IntN(4) {
				req := newMessage(t, m.desc.Input())
				fill(r, req.ProtoReflect(), 3)
				if s.SendMsg(req) != nil {
					break
				}
			}
			_ = s.CloseSend()
			out = newMessage(t, m.desc.Output())
			err = s.RecvMsg(out)
		}
	} else {
		req := newMessage(t, m.desc.Input())
		fill(r, req.ProtoReflect(), 3)
		out = newMessage(t, m.desc.Output())
		err = conn.Invoke(ctx, m.full, req, out, opts...)
	}
	answers.count(status.Code(err))
	switch status.Code(err) {
	case codes.Internal, codes.Unknown, codes.DataLoss:
		return fmt.Errorf("%s answered %v", m.full, err)
	case codes.DeadlineExceeded:
		return fmt.Errorf("%s hung for 20 s", m.full)
	}
	if err == nil && proto.Size(out) > maxAnswerBytes {
		return fmt.Errorf("%s answered %d bytes", m.full, proto.Size(out))
	}
	return nil
}

// fuzzServe starts one `sluice serve` whose AWS endpoints are a closed
// local port, so that no random request leaves the machine, and answers
// its methods and a token of each kind of caller.
func fuzzServe(t testing.TB) (*running, []fuzzMethod, []grpc.CallOption) {
	r := startServeWith(t, func(c *serveConfig) {
		const closed = "http://127.0.0.1:1"
		c.Credential.AWS.S3URL, c.Credential.AWS.STSURL, c.Credential.AWS.KMSURL = closed, closed, closed
		c.Credential.PlatformRoleARN = "arn:aws:iam::123456789012:role/sluice-platform"
	})
	tokens := []grpc.CallOption{
		r.token("acme", auth.PolicyAdministrator), r.token("acme"), r.token("acme", auth.PolicyRestrictPII),
		r.token("globex", auth.PolicyOperator), grpc.PerRPCCredentials(auth.BearerCredentials("not.a.token")),
	}
	return r, methods(t, r), tokens
}

// TestServeRandomRequests runs a bounded number of random requests in
// `make test`; SLUICE_FUZZ_SEED repeats a run, SLUICE_FUZZ_REQUESTS sets
// how many.
func TestServeRandomRequests(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("SLUICE_FUZZ_SEED"), 10, 64); err == nil {
		seed = s
	}
	n := 1500
	if v, err := strconv.Atoi(os.Getenv("SLUICE_FUZZ_REQUESTS")); err == nil {
		n = v
	}
	t.Logf("seed %d (SLUICE_FUZZ_SEED=%d repeats this run), %d requests", seed, seed, n)
	r, ms, tokens := fuzzServe(t)
	if len(ms) < 25 {
		t.Fatalf("only %d methods to fuzz", len(ms))
	}
	// A few callers at once, as production sees them.
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rnd := rand.New(rand.NewPCG(seed, uint64(w)))
			for range n / 4 {
				if t.Failed() {
					return
				}
				if err := oneRequest(t, rnd, ms, tokens); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	t.Logf("answers: %s", &answers)
	var out strings.Builder
	if err := checkHealth(context.Background(), &out, r.addrs, plaintext); err != nil {
		t.Fatalf("after the run: %v", err)
	}
}

// FuzzServeRequests is the same check driven by the fuzzer's inputs, for
// longer runs by hand:
//
//	go test -run '^$' -fuzz FuzzServeRequests -fuzztime 10m ./cmd/sluice
func FuzzServeRequests(f *testing.F) {
	for _, s := range []uint64{1, 2, 3, 42, 1 << 40} {
		f.Add(s, s*7)
	}
	_, ms, tokens := fuzzServe(f)
	f.Fuzz(func(t *testing.T, a, b uint64) {
		if err := oneRequest(t, rand.New(rand.NewPCG(a, b)), ms, tokens); err != nil {
			t.Fatal(err)
		}
	})
}
