package destination

import (
	destinationv1 "github.com/sluicehq/sluice/gen/sluice/destination/v1"
	"github.com/sluicehq/sluice/pkg/auth"
)

// MayUse is the one rule for who may see and send data to a destination.
// Both conditions hold at once:
//   - admin only: only Datagrid Administrators and Operators;
//   - callers under "Restrict PII access" only when the destination allows
//     limited PII access.
//
// A Sluice service acting for itself (no end caller) may use any; acting for
// a user, the user's policies decide.
func MayUse(c *auth.Caller, d *destinationv1.Destination) bool {
	if c.IsService() && c.Tenant == "" {
		return true
	}
	if d.GetAccess().GetAdminOnly() && !c.IsAdmin() {
		return false
	}
	if c.Has(auth.PolicyRestrictPII) && !d.GetAccess().GetAllowLimitedPii() {
		return false
	}
	return true
}
