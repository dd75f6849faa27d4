package destination

import (
	"fmt"
	"testing"

	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/auth"
)

func TestMayUse(t *testing.T) {
	var (
		plain      = &auth.Caller{Tenant: "acme"}
		restricted = &auth.Caller{Tenant: "acme", Policies: []string{auth.PolicyRestrictPII}}
		admin      = &auth.Caller{Tenant: "acme", Policies: []string{auth.PolicyAdministrator}}
		operator   = &auth.Caller{Tenant: "acme", Policies: []string{auth.PolicyOperator}}
		restrAdmin = &auth.Caller{Tenant: "acme", Policies: []string{auth.PolicyOperator, auth.PolicyRestrictPII}}
		service    = &auth.Caller{Service: "sluice-credential"}
		forUser    = &auth.Caller{Tenant: "acme", Service: "sluice-delivery", Policies: []string{auth.PolicyRestrictPII}}
	)
	dest := func(adminOnly, limitedPII bool) *destinationv1.Destination {
		return &destinationv1.Destination{Access: &destinationv1.Access{AdminOnly: adminOnly, AllowLimitedPii: limitedPII}}
	}
	tests := []struct {
		caller             *auth.Caller
		adminOnly, limited bool
		want               bool
	}{
		{plain, false, false, true},
		{plain, false, true, true},
		{plain, true, false, false},
		{restricted, false, false, false},
		{restricted, false, true, true},
		{restricted, true, true, false},
		{admin, true, false, true},
		{operator, true, false, true},
		{admin, false, false, true},
		{restrAdmin, true, false, false}, // an operator under PII restriction stays restricted
		{restrAdmin, true, true, true},
		{restrAdmin, false, false, false},
		{service, true, false, true},
		{forUser, false, false, false}, // a service on a restricted user's behalf keeps the user's limits
		{forUser, false, true, true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%v/admin_only=%v/limited_pii=%v", tt.caller.Policies, tt.adminOnly, tt.limited), func(t *testing.T) {
			if got := MayUse(tt.caller, dest(tt.adminOnly, tt.limited)); got != tt.want {
				t.Fatalf("MayUse = %v, want %v", got, tt.want)
			}
		})
	}
}
