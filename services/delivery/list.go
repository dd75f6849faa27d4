package delivery

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	deliveryv1 "github.com/sluicehq/sluice/gen/sluice/delivery/v1"
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/auth"
	"github.com/sluicehq/sluice/pkg/pagination"
	"github.com/sluicehq/sluice/pkg/resourcestore"
	"github.com/sluicehq/sluice/pkg/validate"
	"github.com/sluicehq/sluice/services/delivery/store"
)

// mayView answers whether the caller may see deliveries to a destination:
// exactly when they may send data to it, which the destination service
// decides (ResolveDestination, asked for the caller). Answers are kept for
// one request in seen.
func (s *Service) mayView(ctx context.Context, destination string, seen map[string]bool) (bool, error) {
	if ok, asked := seen[destination]; asked {
		return ok, nil
	}
	if destination == "" {
		// Of no one destination (a subscription to a whole environment):
		// for those who may use every destination.
		c, _ := auth.FromContext(ctx)
		return c != nil && c.IsAdmin() && !c.Has(auth.PolicyRestrictPII), nil
	}
	_, err := s.peers.Destinations.ResolveDestination(ctx, &destinationv1.ResolveDestinationRequest{Name: destination})
	switch status.Code(err) {
	case codes.OK:
		seen[destination] = true
	case codes.PermissionDenied:
		seen[destination] = false
	case codes.NotFound:
		// A deleted destination's deliveries stay visible to those who
		// could use any destination: administrators.
		c, _ := auth.FromContext(ctx)
		seen[destination] = c != nil && c.IsAdmin() && !c.Has(auth.PolicyRestrictPII)
	default:
		return false, err
	}
	return seen[destination], nil
}

// getVisible answers one resource of table when the caller may use its
// destination, and NotFound otherwise, exactly as for one that does not
// exist.
func getVisible[T interface {
	proto.Message
	GetDestination() string
}](ctx context.Context, s *Service, table *resourcestore.Table[T], name string) (T, error) {
	var zero T
	item, err := table.Get(ctx, name)
	if errors.Is(err, apierror.ErrNotFound) {
		return zero, apierror.NotFound(name)
	}
	if err != nil {
		return zero, err
	}
	ok, err := s.mayView(ctx, item.GetDestination(), map[string]bool{})
	if err != nil {
		return zero, err
	}
	if !ok {
		return zero, apierror.NotFound(name)
	}
	return item, nil
}

// GetDelivery answers one delivery, with its live progress while it runs.
func (s *Service) GetDelivery(ctx context.Context, req *deliveryv1.GetDeliveryRequest) (*deliveryv1.Delivery, error) {
	if err := named(ctx, "name", req.GetName(), deliveries); err != nil {
		return nil, err
	}
	return getVisible(ctx, s, s.store.Deliveries, req.GetName())
}

var filterTerm = regexp.MustCompile(`^\s*([a-z_]+)\s*=\s*("([^"]*)"|[A-Za-z_]+)\s*$`)

// filterField is one field a list filters on: its column, and how a value
// becomes what the column holds.
type filterField struct {
	name, column string
	// hint says the values it takes, for the error.
	hint  string
	value func(raw string, quoted bool) (any, bool)
}

var (
	destinationField = filterField{name: "destination", column: store.DestinationColumn, hint: `"<destination name>"`,
		value: func(raw string, quoted bool) (any, bool) { return raw, quoted }}
	deliveryStateField = enumField("state", store.StateColumn, "DELIVERY_STATE_", deliveryv1.DeliveryState_value, "RECEIVING|UPLOADING|SUCCEEDED|FAILED|RESOLVING|CANCELLED")
	workflowStateField = enumField("state", store.StateColumn, "WORKFLOW_STATE_", deliveryv1.WorkflowState_value, "RUNNING|SUCCEEDED|FAILED|RESOLVING|CANCELLED")
	acknowledgedField  = filterField{name: "acknowledged", column: store.AcknowledgedColumn, hint: "true|false",
		value: func(raw string, quoted bool) (any, bool) {
			switch {
			case quoted:
				return nil, false
			case raw == "true":
				return int32(1), true
			case raw == "false":
				return int32(0), true
			}
			return nil, false
		}}
)

func enumField(name, column, prefix string, values map[string]int32, hint string) filterField {
	return filterField{name: name, column: column, hint: hint, value: func(raw string, quoted bool) (any, bool) {
		v, ok := values[prefix+strings.TrimPrefix(raw, prefix)]
		return v, ok && v != 0 && !quoted
	}}
}

// parseFilter reads terms `field = value` joined by AND, on the fields
// given.
func parseFilter(filter string, fields ...filterField) ([]resourcestore.Where, error) {
	if strings.TrimSpace(filter) == "" {
		return nil, nil
	}
	var where []resourcestore.Where
	bad := func(why string) error {
		var help []string
		for _, f := range fields {
			help = append(help, f.name+" = "+f.hint)
		}
		var v apierror.Violations
		v.Add("filter", "%s: use %s, joined by AND", why, strings.Join(help, " and "))
		return v.Err()
	}
	seen := map[string]bool{}
	for _, term := range strings.Split(filter, " AND ") {
		m := filterTerm.FindStringSubmatch(term)
		if m == nil {
			return nil, bad("cannot read " + strings.TrimSpace(term))
		}
		if seen[m[1]] {
			return nil, bad(m[1] + " appears twice")
		}
		seen[m[1]] = true
		i := slices.IndexFunc(fields, func(f filterField) bool { return f.name == m[1] })
		if i < 0 {
			return nil, bad("cannot filter on " + m[1])
		}
		quoted := strings.HasPrefix(m[2], `"`)
		raw := m[2]
		if quoted {
			raw = m[3]
		}
		val, ok := fields[i].value(raw, quoted)
		if !ok {
			return nil, bad(fmt.Sprintf("%s cannot be %s", m[1], m[2]))
		}
		where = append(where, resourcestore.Where{Column: fields[i].column, Value: val})
	}
	return where, nil
}

// listRequest is what every list request of the delivery service carries.
type listRequest interface {
	GetParent() string
	GetPageSize() int32
	GetPageToken() string
	GetFilter() string
}

// listVisible answers a page of table's resources under the request's
// parent, newest first, filtered on fields, keeping those whose
// destination the caller may use, and the next page's token.
func listVisible[T interface {
	proto.Message
	GetName() string
	GetDestination() string
}](ctx context.Context, s *Service, table *resourcestore.Table[T], req listRequest, fields ...filterField) ([]T, string, error) {
	where, err := parseFilter(req.GetFilter(), fields...)
	if err != nil {
		return nil, "", err
	}
	key, err := s.pageTokenKey(ctx)
	if err != nil {
		return nil, "", err
	}
	token, err := pagination.Open(key, req.GetPageToken())
	if err != nil {
		var v apierror.Violations
		v.Add("page_token", "%v", err)
		return nil, "", v.Err()
	}
	p, size, before, err := validate.Listing(req.GetParent(), req.GetPageSize(), token, req.GetFilter())
	if err != nil {
		return nil, "", err
	}
	if err := auth.Visible(ctx, p.Tenant, req.GetParent()); err != nil {
		return nil, "", err
	}
	// Pages are filled with what the caller may see, reading on past what
	// it may not, so that the next page's token names only an item the
	// caller was given (#22: tokens named deliveries to destinations the
	// caller may not use).
	var out []T
	seen := map[string]bool{}
	more := false
	for {
		items, next, err := table.ListDescending(ctx, req.GetParent(), before, size, where...)
		if err != nil {
			return nil, "", err
		}
		for k, item := range items {
			if len(out) == size {
				more = true
				break
			}
			ok, err := s.mayView(ctx, item.GetDestination(), seen)
			if err != nil {
				return nil, "", err
			}
			if ok {
				out = append(out, item)
			}
			if len(out) == size && (k < len(items)-1 || next != "") {
				more = true
				break
			}
		}
		if len(out) == size || next == "" {
			break
		}
		before = next
	}
	next := ""
	if more {
		// Sealed: opaque to the caller, whatever it names.
		if next, err = pagination.Seal(key, pagination.Encode(out[len(out)-1].GetName(), pagination.Digest(req.GetParent(), req.GetFilter()))); err != nil {
			return nil, "", err
		}
	}
	return out, next, nil
}

// ListDeliveries answers a page of the deliveries the caller may see,
// newest first.
func (s *Service) ListDeliveries(ctx context.Context, req *deliveryv1.ListDeliveriesRequest) (*deliveryv1.ListDeliveriesResponse, error) {
	items, next, err := listVisible(ctx, s, s.store.Deliveries, req, destinationField, deliveryStateField)
	if err != nil {
		return nil, err
	}
	return &deliveryv1.ListDeliveriesResponse{Deliveries: items, NextPageToken: next}, nil
}

// pageTokenKey answers the key page tokens are sealed with, shared by the
// replicas through the store, read once.
func (s *Service) pageTokenKey(ctx context.Context) ([]byte, error) {
	if k := s.pageKey.Load(); k != nil {
		return *k, nil
	}
	k, err := s.store.Key(ctx, "page-tokens")
	if err != nil {
		return nil, err
	}
	s.pageKey.Store(&k)
	return k, nil
}
