// Package validate holds the request checks every service makes the same
// way: resource names, parents, ids, page sizes and tokens, required and
// bounded fields. Each check records a field violation and answers whether
// the value passed, so a handler reports every problem at once.
package validate

import (
	"slices"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/fieldmaskpb"

	"github.com/sluicehq/sluice/pkg/apierror"
	"github.com/sluicehq/sluice/pkg/awsname"
	"github.com/sluicehq/sluice/pkg/pagination"
	"github.com/sluicehq/sluice/pkg/resourcename"
)

// Violations collects field violations; an alias so callers need one import.
type Violations = apierror.Violations

// Name checks a resource name of collection.
func Name(v *apierror.Violations, field, value, collection string) (resourcename.Name, bool) {
	n, err := resourcename.Parse(value, collection)
	if err != nil {
		v.Add(field, "%v", err)
		return n, false
	}
	return n, true
}

// Parent checks `tenants/{tenant}/environments/{environment}`.
func Parent(v *apierror.Violations, field, value string) (resourcename.Parent, bool) {
	p, err := resourcename.ParseParent(value)
	if err != nil {
		v.Add(field, "%v", err)
		return p, false
	}
	return p, true
}

// ID checks the id of a resource to create.
func ID(v *apierror.Violations, field, value string) bool {
	if err := resourcename.ValidID(value); err != nil {
		v.Add(field, "%v", err)
		return false
	}
	return true
}

// Page checks page_size and page_token against the request digest and
// answers the size and the key to resume after.
func Page(v *apierror.Violations, size int32, token, digest string) (int, string) {
	n, err := pagination.Size(size)
	if err != nil {
		v.Add("page_size", "%v", err)
	}
	after, err := pagination.Decode(token, digest)
	if err != nil {
		v.Add("page_token", "%v", err)
	}
	return n, after
}

// Required checks that a string field is set.
func Required(v *apierror.Violations, field, value string) bool {
	if value == "" {
		v.Add(field, "is required")
		return false
	}
	return true
}

// Present checks that a message field is set.
func Present(v *apierror.Violations, field string, set bool) bool {
	if !set {
		v.Add(field, "is required")
	}
	return set
}

// MaxLen checks that a string is valid UTF-8 of at most max characters.
func MaxLen(v *apierror.Violations, field, value string, max int) bool {
	if !utf8.ValidString(value) {
		v.Add(field, "must be valid UTF-8")
		return false
	}
	if n := utf8.RuneCountInString(value); n > max {
		v.Add(field, "must be at most %d characters; got %d", max, n)
		return false
	}
	return true
}

// Resource validates a request that names one resource of collection in
// field. Whether the caller may see it is auth.Visible's question.
func Resource(field, name, collection string) (resourcename.Name, error) {
	var v Violations
	n, _ := Name(&v, field, name, collection)
	return n, v.Err()
}

// Listing validates the parent and paging of a List request (the token is
// bound to parent and filter) and answers the parent, the page size and the
// key to resume after.
func Listing(parent string, size int32, token, filter string) (resourcename.Parent, int, string, error) {
	var v Violations
	p, _ := Parent(&v, "parent", parent)
	n, after := Page(&v, size, token, pagination.Digest(parent, filter))
	if err := v.Err(); err != nil {
		return p, 0, "", err
	}
	return p, n, after, nil
}

// UpdateMask checks that an Update names at least one field, each one of
// updatable, and answers the paths.
func UpdateMask(v *Violations, mask *fieldmaskpb.FieldMask, updatable []string) []string {
	if Present(v, "update_mask", mask != nil) && len(mask.GetPaths()) == 0 {
		v.Add("update_mask.paths", "must name at least one field")
	}
	for _, p := range mask.GetPaths() {
		if !slices.Contains(updatable, p) {
			v.Add("update_mask.paths", "%q cannot be updated; updatable fields are %s", p, strings.Join(updatable, ", "))
		}
	}
	return mask.GetPaths()
}

// Text checks a name or description a person reads: valid UTF-8, at most
// max characters, and no control, bidirectional-override or zero-width
// characters, which make text display as something it is not (a
// description may hold line breaks and tabs).
func Text(v *Violations, field, value string, max int, multiline bool) bool {
	if !MaxLen(v, field, value, max) {
		return false
	}
	check := value
	if multiline {
		check = strings.NewReplacer("\n", "", "\r\n", "", "\t", "").Replace(value)
	}
	if r, bad := awsname.UnsafeRune(check); bad {
		v.Add(field, "must not contain the control or formatting character %U", r)
		return false
	}
	return true
}

// DisplayName checks a display name: one line of at most 200 characters.
func DisplayName(v *Violations, field, value string) bool { return Text(v, field, value, 200, false) }

// Description checks a description: at most 2,000 characters, lines allowed.
func Description(v *Violations, field, value string) bool { return Text(v, field, value, 2000, true) }
