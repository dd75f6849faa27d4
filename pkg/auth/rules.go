package auth

import (
	"strings"

	"google.golang.org/grpc/codes"

	errorsv1 "github.com/sluicehq/sluice/gen/sluice/errors/v1"
	"github.com/sluicehq/sluice/pkg/apierror"
)

// Rule says who may call a method. Every method of every registered service
// has one, in its service's rule table; the Authorizer checks it before the
// handler runs, and a method without one is denied. Handlers then make only
// the per-resource decision (may this caller use this destination?).
type Rule int

// The rules, from most to least open.
const (
	// Deny is the zero value: a method nobody gave a rule.
	Deny Rule = iota
	// Public methods need no token: health and reflection, which carry no
	// tenant data.
	Public
	// AnyCaller methods take any verified caller: a tenant's user, or a
	// Sluice service acting for one or for itself. Tenancy and the resource
	// rules still decide what it sees.
	AnyCaller
	// Admin methods need an end caller holding Datagrid Administrator or
	// Datagrid Operator.
	Admin
	// ServiceOnly methods are internal: only Sluice services may call them.
	ServiceOnly
)

// String answers the rule as the README's table names it.
func (r Rule) String() string {
	switch r {
	case Public:
		return "public"
	case AnyCaller:
		return "any caller"
	case Admin:
		return "administrator"
	case ServiceOnly:
		return "service only"
	default:
		return "deny"
	}
}

// Allows reports whether the rule lets c call.
func (r Rule) Allows(c *Caller) bool { return r.check(c) == nil }

func (r Rule) check(c *Caller) error {
	switch r {
	case Public, AnyCaller:
		return nil
	case Admin:
		if c.IsAdmin() {
			return nil
		}
		return apierror.New(codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED,
			"this needs the Datagrid Administrator or Datagrid Operator policy").With("policy", PolicyAdministrator)
	case ServiceOnly:
		if c.IsService() {
			return nil
		}
		return apierror.New(codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED,
			"this method is internal: only Sluice services may call it").With("policy", PolicyService)
	default:
		return apierror.New(codes.PermissionDenied, errorsv1.ErrorReason_ERROR_REASON_PERMISSION_DENIED,
			"this method has no authorization rule, so it is denied to everyone")
	}
}

// Rules maps full method names (`/sluice.credential.v1.CredentialService/GetCredential`)
// to their rules.
type Rules map[string]Rule

// IsPublicMethod reports whether a method needs no token on any server:
// health checks and server reflection, which carry no tenant data.
func IsPublicMethod(fullMethod string) bool {
	return strings.HasPrefix(fullMethod, "/grpc.health.v1.Health/") ||
		strings.HasPrefix(fullMethod, "/grpc.reflection.")
}
