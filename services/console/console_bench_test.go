package console

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/timestamppb"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	"github.com/sluicehq/sluice/pkg/auth"
)

// fakeDeliveries answers pages of a store of n deliveries, and the
// workflow of one, as the delivery service would: the console's own cost
// is what the benchmark measures.
type fakeDeliveries struct {
	deliveryv1.DeliveryServiceClient
	deliveryv1.WorkflowServiceClient
	all []*deliveryv1.Delivery
}

func newFake(n int) *fakeDeliveries {
	f := &fakeDeliveries{}
	for i := range n {
		name := fmt.Sprintf("tenants/acme/environments/production/deliveries/d%06d", i)
		f.all = append(f.all, &deliveryv1.Delivery{Name: name, Destination: "tenants/acme/environments/production/destinations/exports",
			OutputName: fmt.Sprintf("customers-%d", i), State: deliveryv1.DeliveryState_DELIVERY_STATE_SUCCEEDED,
			Progress: &deliveryv1.DeliveryProgress{Rows: 1_000_000, BytesIn: 1 << 28, BytesOut: 1 << 27, Parts: 26}, CreateTime: timestamppb.Now(),
			StagedInput: &deliveryv1.StagedInput{State: deliveryv1.StagedInputState_STAGED_INPUT_STATE_DELETED},
			Objects:     []*deliveryv1.DeliveredObject{{Key: "exports/customers_00001.parquet", Rows: 1_000_000, Bytes: 1 << 27, Checksum: "sha256:00"}}})
	}
	return f
}

func (f *fakeDeliveries) ListDeliveries(_ context.Context, in *deliveryv1.ListDeliveriesRequest, _ ...grpc.CallOption) (*deliveryv1.ListDeliveriesResponse, error) {
	return &deliveryv1.ListDeliveriesResponse{Deliveries: f.all[:min(50, len(f.all))], NextPageToken: "next"}, nil
}

func (f *fakeDeliveries) GetDelivery(_ context.Context, in *deliveryv1.GetDeliveryRequest, _ ...grpc.CallOption) (*deliveryv1.Delivery, error) {
	return f.all[0], nil
}

func (f *fakeDeliveries) GetWorkflow(_ context.Context, in *deliveryv1.GetWorkflowRequest, _ ...grpc.CallOption) (*deliveryv1.Workflow, error) {
	w := newWorkflowFor(f.all[0])
	return w, nil
}

func (f *fakeDeliveries) ListNotifications(context.Context, *deliveryv1.ListNotificationsRequest, ...grpc.CallOption) (*deliveryv1.ListNotificationsResponse, error) {
	return &deliveryv1.ListNotificationsResponse{}, nil
}

func newWorkflowFor(d *deliveryv1.Delivery) *deliveryv1.Workflow {
	w := &deliveryv1.Workflow{Name: d.GetName() + "/workflow", Delivery: d.GetName(), Destination: d.GetDestination(),
		State: deliveryv1.WorkflowState_WORKFLOW_STATE_FAILED, CurrentRun: &deliveryv1.WorkflowRun{Run: 1}}
	for _, s := range []string{"get_access", "check_destination", "convert", "upload", "finish"} {
		w.Steps = append(w.Steps, &deliveryv1.WorkflowStep{Step: s, State: deliveryv1.StepState_STEP_STATE_SUCCEEDED, Attempts: 1})
	}
	w.Actions = []*deliveryv1.WorkflowAction{{Id: "retry-task", Title: "Retry the failed step", Instructions: []string{"Sluice continues."}}}
	return w
}

// console answers a console on fake peers with one logged-in session.
func benchConsole(tb testing.TB, n int) (*Server, *http.Cookie) {
	f := newFake(n)
	s, err := New(Config{}, Peers{Deliveries: f, Workflows: f}, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatal(err)
	}
	rec := httptest.NewRecorder()
	s.newSession(rec, httptest.NewRequest(http.MethodGet, "/", nil), "token", &auth.Caller{Subject: "ada", Tenant: "acme"}, time.Now().Add(time.Hour))
	return s, rec.Result().Cookies()[0]
}

// BenchmarkConsolePages renders the deliveries list and a workflow with
// 1,000 deliveries stored (a page of 50 shown), reporting the p95 of one
// render beside the mean.
func BenchmarkConsolePages(b *testing.B) {
	s, cookie := benchConsole(b, 1000)
	for _, path := range []string{"/deliveries", "/workflows/d000000"} {
		b.Run(strings.Trim(strings.ReplaceAll(path, "/", "-"), "-"), func(b *testing.B) {
			var took []time.Duration
			for b.Loop() {
				req := httptest.NewRequest(http.MethodGet, path, nil)
				req.AddCookie(cookie)
				rec := httptest.NewRecorder()
				start := time.Now()
				s.ServeHTTP(rec, req)
				took = append(took, time.Since(start))
				if rec.Code != http.StatusOK {
					b.Fatalf("%s: %d", path, rec.Code)
				}
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)*95/100].Microseconds())/1000, "p95-ms")
		})
	}
}

// A page with everything it loads stays small: HTML, CSS and JavaScript
// under 150 KB together.
func TestPageWeight(t *testing.T) {
	s, cookie := benchConsole(t, 1000)
	total := 0
	for _, path := range []string{"/deliveries", "/static/console.css", "/static/htmx.min.js", "/static/console.js"} {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.AddCookie(cookie)
		rec := httptest.NewRecorder()
		s.ServeHTTP(rec, req)
		b, _ := io.ReadAll(rec.Result().Body)
		if rec.Code != http.StatusOK {
			t.Fatalf("%s: %d", path, rec.Code)
		}
		total += len(b)
	}
	if total > 150<<10 {
		t.Errorf("the deliveries page loads %d bytes; at most 150 KB", total)
	}
	t.Logf("the deliveries page with what it loads: %d bytes", total)
}
