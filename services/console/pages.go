package console

import (
	"bytes"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/outputspec"
)

// funcs are the helpers templates use; every value they answer is escaped
// by html/template where it lands.
var funcs = template.FuncMap{
	"leaf": leaf,
	"enum": func(v interface{ String() string }, prefix string) string {
		return strings.ReplaceAll(strings.TrimPrefix(v.String(), prefix), "_", " ")
	},
	"when": func(t *timestamppb.Timestamp) string {
		if t == nil {
			return "—"
		}
		return t.AsTime().UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"bytes": func(n int64) string {
		const unit = 1024
		if n < unit {
			return itoa(n) + " B"
		}
		div, exp := int64(unit), 0
		for m := n / unit; m >= unit; m /= unit {
			div *= unit
			exp++
		}
		return trim(float64(n)/float64(div)) + " " + string("KMGTPE"[exp]) + "iB"
	},
	"running": func(d *deliveryv1.Delivery) bool {
		s := d.GetState()
		return s == deliveryv1.DeliveryState_DELIVERY_STATE_RECEIVING || s == deliveryv1.DeliveryState_DELIVERY_STATE_UPLOADING ||
			s == deliveryv1.DeliveryState_DELIVERY_STATE_RESOLVING
	},
	"lower":       strings.ToLower,
	"partitionBy": outputspec.FormatPartitionBy,
	"map": func(kv ...any) map[string]any {
		m := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i].(string)] = kv[i+1]
		}
		return m
	},
	"list": func(s ...string) []string { return s },
	// page answers the console page of a resource name, for links.
	"page": func(name string) string {
		parts := strings.Split(name, "/")
		if len(parts) < 2 {
			return ""
		}
		return "/" + parts[len(parts)-2] + "/" + parts[len(parts)-1]
	},
	"format": func(f *destinationv1.FileFormat) string {
		switch {
		case f.GetParquet() != nil:
			return "Parquet"
		case f.GetJson() != nil:
			return "JSON"
		case f.GetNdjson() != nil:
			return "NDJSON"
		case f.GetDelimited().GetDelimiter() == "\t":
			return "TSV"
		case f.GetDelimited().GetDelimiter() == "|":
			return "PSV"
		}
		return "CSV"
	},
}

// parse reads every page, each with the layout.
func (s *Server) parse() error {
	s.pages = map[string]*template.Template{}
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return err
	}
	for _, n := range names {
		name := strings.TrimSuffix(strings.TrimPrefix(n, "templates/"), ".html")
		if name == "layout" {
			continue
		}
		t, err := template.New(name).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/parts/*.html", n)
		if err != nil {
			return err
		}
		s.pages[name] = t
	}
	return nil
}

// view is what the layout shows around every page.
type view struct {
	Title  string
	User   *auth.Caller
	Env    string
	Unread int
	Data   any
}

// render writes page, whole, or only its block named by ?partial= (htmx
// asks for those), rendered into a buffer first so that a failure shows
// an error page rather than half a page.
func (s *Server) render(w http.ResponseWriter, r *http.Request, code int, page string, data any, q *request) {
	v := view{Title: page, Data: data}
	if q != nil {
		v.User, v.Env = q.se.caller, leaf(q.parent)
		v.Unread = s.unread(q)
	}
	block := "layout"
	if p := r.URL.Query().Get("partial"); p != "" && s.pages[page].Lookup(p) != nil && p != "layout" {
		block = p
	}
	var b bytes.Buffer
	if err := s.pages[page].ExecuteTemplate(&b, block, v); err != nil {
		s.log.Error("render", "page", page, "error", err.Error())
		http.Error(w, "the page could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write(b.Bytes())
}

// fragment writes one block of a page, alone: what htmx swaps in.
func (s *Server) fragment(w http.ResponseWriter, page, block string, data any) {
	var b bytes.Buffer
	if err := s.pages[page].ExecuteTemplate(&b, block, data); err != nil {
		s.log.Error("render", "page", page, "error", err.Error())
		http.Error(w, "the fragment could not be rendered", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(b.Bytes())
}

// fail shows an error the services answered, in plain words; their
// access rules decide, the console only says what they said.
func (s *Server) fail(q *request, err error) {
	e := apierror.FromStatus(err)
	code := http.StatusBadGateway
	msg := "The services could not answer: try again."
	if e != nil {
		msg = e.Message
		switch e.Code {
		case codes.NotFound:
			code, msg = http.StatusNotFound, "Not found: it does not exist, or you may not see it."
		case codes.PermissionDenied:
			code = http.StatusForbidden
		case codes.InvalidArgument, codes.FailedPrecondition, codes.Aborted, codes.AlreadyExists:
			code = http.StatusBadRequest
			for _, v := range e.Violations {
				msg += " " + v.Field + ": " + v.Description + "."
			}
		case codes.Unauthenticated:
			http.Redirect(q.w, q.r, "/login?error=Your+session+ended:+log+in+again.", http.StatusSeeOther)
			return
		}
	}
	if st, ok := status.FromError(err); !ok || st.Code() == codes.Unknown {
		s.log.Error("console page", "path", q.r.URL.Path, "error", err.Error())
	}
	s.render(q.w, q.r, code, "error", map[string]any{"Message": msg, "Code": code}, q)
}

// unread counts the user's unacknowledged notifications, for the bell.
func (s *Server) unread(q *request) int {
	resp, err := s.peers.Workflows.ListNotifications(q.ctx(), &deliveryv1.ListNotificationsRequest{Parent: q.parent, Filter: "acknowledged = false", PageSize: 100}, q.as())
	if err != nil {
		return 0
	}
	return len(resp.GetNotifications())
}

func (s *Server) deliveries(q *request) error {
	resp, err := s.peers.Deliveries.ListDeliveries(q.ctx(), &deliveryv1.ListDeliveriesRequest{Parent: q.parent, PageSize: 50,
		PageToken: q.r.URL.Query().Get("page"), Filter: stateFilter(q.r.URL.Query().Get("state"), "RECEIVING|UPLOADING|SUCCEEDED|FAILED|RESOLVING|CANCELLED")}, q.as())
	if err != nil {
		return err
	}
	live := false
	for _, d := range resp.GetDeliveries() {
		if funcs["running"].(func(*deliveryv1.Delivery) bool)(d) {
			live = true
		}
	}
	s.render(q.w, q.r, http.StatusOK, "deliveries", map[string]any{"Deliveries": resp.GetDeliveries(), "Next": resp.GetNextPageToken(),
		"Live": live, "State": q.r.URL.Query().Get("state")}, q)
	return nil
}

func (s *Server) delivery(q *request) error {
	d, err := s.peers.Deliveries.GetDelivery(q.ctx(), &deliveryv1.GetDeliveryRequest{Name: q.parent + "/deliveries/" + q.r.PathValue("id")}, q.as())
	if err != nil {
		return err
	}
	s.render(q.w, q.r, http.StatusOK, "delivery", d, q)
	return nil
}

func (s *Server) notifications(q *request) error {
	resp, err := s.peers.Workflows.ListNotifications(q.ctx(), &deliveryv1.ListNotificationsRequest{Parent: q.parent, PageSize: 50}, q.as())
	if err != nil {
		return err
	}
	s.render(q.w, q.r, http.StatusOK, "notifications", resp.GetNotifications(), q)
	return nil
}

func (s *Server) acknowledge(q *request) error {
	_, err := s.peers.Workflows.AcknowledgeNotification(q.ctx(), &deliveryv1.AcknowledgeNotificationRequest{Name: q.parent + "/notifications/" + q.r.PathValue("id")}, q.as())
	if err != nil {
		return err
	}
	http.Redirect(q.w, q.r, "/notifications?env="+leaf(q.parent), http.StatusSeeOther)
	return nil
}

func (s *Server) workflows(q *request) error {
	resp, err := s.peers.Workflows.ListWorkflows(q.ctx(), &deliveryv1.ListWorkflowsRequest{Parent: q.parent, PageSize: 50,
		PageToken: q.r.URL.Query().Get("page"), Filter: stateFilter(q.r.URL.Query().Get("state"), "RUNNING|SUCCEEDED|FAILED|RESOLVING|CANCELLED")}, q.as())
	if err != nil {
		return err
	}
	s.render(q.w, q.r, http.StatusOK, "workflows", map[string]any{"Workflows": resp.GetWorkflows(), "Next": resp.GetNextPageToken(),
		"State": q.r.URL.Query().Get("state")}, q)
	return nil
}

// workflowPage is a workflow with its delivery, and whether the user asked
// to see the resolutions.
type workflowPage struct {
	W           *deliveryv1.Workflow
	D           *deliveryv1.Delivery
	Resolutions bool
	Selected    *deliveryv1.WorkflowAction
	Live        bool
}

func (s *Server) workflow(q *request) error {
	name := q.parent + "/deliveries/" + q.r.PathValue("id")
	w, err := s.peers.Workflows.GetWorkflow(q.ctx(), &deliveryv1.GetWorkflowRequest{Name: name + "/workflow"}, q.as())
	if err != nil {
		return err
	}
	d, err := s.peers.Deliveries.GetDelivery(q.ctx(), &deliveryv1.GetDeliveryRequest{Name: name}, q.as())
	if err != nil {
		return err
	}
	p := workflowPage{W: w, D: d, Resolutions: q.r.URL.Query().Has("resolutions"),
		Live: w.GetState() == deliveryv1.WorkflowState_WORKFLOW_STATE_RUNNING || w.GetState() == deliveryv1.WorkflowState_WORKFLOW_STATE_RESOLVING}
	for _, a := range w.GetActions() {
		if a.GetId() == q.r.URL.Query().Get("action") {
			p.Selected, p.Resolutions = a, true
		}
	}
	s.render(q.w, q.r, http.StatusOK, "workflow", p, q)
	return nil
}

// resolve runs the chosen action. The run goes on in the delivery
// service; the page follows it.
func (s *Server) resolve(q *request) error {
	name := q.parent + "/deliveries/" + q.r.PathValue("id") + "/workflow"
	ctx, cancel := contextWithTimeout(q, 2*time.Second)
	defer cancel()
	_, err := s.peers.Workflows.ResolveWorkflow(ctx, &deliveryv1.ResolveWorkflowRequest{Name: name, ActionId: q.r.PostFormValue("action"),
		Etag: q.r.PostFormValue("etag")}, q.as())
	// The run outlives this request: a deadline here only means it is
	// still running, which the page shows.
	if err != nil && status.Code(err) != codes.DeadlineExceeded && apierror.FromStatus(err).Code != codes.Canceled && !errors.Is(err, ctx.Err()) {
		if e := apierror.FromStatus(err); e == nil || e.Metadata["delivery"] == "" {
			return err
		}
	}
	http.Redirect(q.w, q.r, "/workflows/"+q.r.PathValue("id")+"?env="+leaf(q.parent), http.StatusSeeOther)
	return nil
}

// stateFilter answers `state = X` when state is one of allowed.
func stateFilter(state, allowed string) string {
	for _, a := range strings.Split(allowed, "|") {
		if state == a {
			return "state = " + a
		}
	}
	return ""
}

func urlQuery(s string) string { return url.QueryEscape(s) }
