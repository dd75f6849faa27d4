package delivery

import (
	"context"
	"errors"
	"regexp"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

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

// GetDelivery answers one delivery, with its live progress while it runs.
func (s *Service) GetDelivery(ctx context.Context, req *deliveryv1.GetDeliveryRequest) (*deliveryv1.Delivery, error) {
	if err := named(ctx, "name", req.GetName(), deliveries); err != nil {
		return nil, err
	}
	d, err := s.store.Deliveries.Get(ctx, req.GetName())
	if errors.Is(err, apierror.ErrNotFound) {
		return nil, apierror.NotFound(req.GetName())
	}
	if err != nil {
		return nil, err
	}
	ok, err := s.mayView(ctx, d.GetDestination(), map[string]bool{})
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, apierror.NotFound(req.GetName())
	}
	return d, nil
}

var filterTerm = regexp.MustCompile(`^\s*(destination|state)\s*=\s*("([^"]*)"|[A-Z_]+)\s*$`)

// parseFilter reads `destination = "<name>"` and `state = FAILED`, joined
// by AND.
func parseFilter(filter string) ([]resourcestore.Where, error) {
	if strings.TrimSpace(filter) == "" {
		return nil, nil
	}
	var where []resourcestore.Where
	bad := func(why string) error {
		var v apierror.Violations
		v.Add("filter", `%s: use destination = "<destination name>" and state = <RECEIVING|UPLOADING|SUCCEEDED|FAILED|RESOLVING>, joined by AND`, why)
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
		switch m[1] {
		case "destination":
			if m[3] == "" && !strings.HasPrefix(m[2], `"`) {
				return nil, bad("the destination must be a quoted name")
			}
			where = append(where, resourcestore.Where{Column: store.DestinationColumn, Value: m[3]})
		case "state":
			v, ok := deliveryv1.DeliveryState_value["DELIVERY_STATE_"+strings.TrimPrefix(m[2], "DELIVERY_STATE_")]
			if !ok || v == 0 {
				return nil, bad("unknown state " + m[2])
			}
			where = append(where, resourcestore.Where{Column: store.StateColumn, Value: v})
		}
	}
	return where, nil
}

// ListDeliveries answers a page of the deliveries the caller may see,
// newest first.
func (s *Service) ListDeliveries(ctx context.Context, req *deliveryv1.ListDeliveriesRequest) (*deliveryv1.ListDeliveriesResponse, error) {
	where, err := parseFilter(req.GetFilter())
	if err != nil {
		return nil, err
	}
	p, size, before, err := validate.Listing(req.GetParent(), req.GetPageSize(), req.GetPageToken(), req.GetFilter())
	if err != nil {
		return nil, err
	}
	if err := auth.Visible(ctx, p.Tenant, req.GetParent()); err != nil {
		return nil, err
	}
	items, next, err := s.store.Deliveries.ListDescending(ctx, req.GetParent(), before, size, where...)
	if err != nil {
		return nil, err
	}
	resp := &deliveryv1.ListDeliveriesResponse{}
	seen := map[string]bool{}
	for _, d := range items {
		ok, err := s.mayView(ctx, d.GetDestination(), seen)
		if err != nil {
			return nil, err
		}
		if ok {
			resp.Deliveries = append(resp.Deliveries, d)
		}
	}
	if next != "" {
		resp.NextPageToken = pagination.Encode(next, pagination.Digest(req.GetParent(), req.GetFilter()))
	}
	return resp, nil
}
